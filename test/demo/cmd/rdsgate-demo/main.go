// Command rdsgate-demo runs rdsgate's whole flow locally, with no AWS
// account (see package demo):
//
//	go run ./test/demo/cmd/rdsgate-demo up     # make demo
//	go run ./test/demo/cmd/rdsgate-demo down   # make demo-down
//
// `up` starts a background environment (moto, PostgreSQL, MariaDB, the RDS
// emulators), applies examples/complete with terraform, starts the proxy
// and queries through it; everything keeps running until `down`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/demo"
)

func main() {
	dir := flag.String("dir", ".tmp/demo", "where the demo keeps its state")
	bin := flag.String("bin", "bin/rdsgate", "the rdsgate binary")
	flag.Parse()
	abs, _ := filepath.Abs(*dir)
	var err error
	switch flag.Arg(0) {
	case "up":
		err = up(abs, *bin)
	case "down":
		err = down(abs, true)
	case "env":
		err = runEnv(abs)
	default:
		err = errors.New("usage: rdsgate-demo [-dir DIR] up|down")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdsgate-demo:", err)
		os.Exit(1)
	}
}

func up(dir, bin string) error {
	if err := down(dir, false); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bin, _ = filepath.Abs(bin)
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Printf("  %-5s "+format+"\n", append([]any{time.Since(start).Round(time.Second)}, args...)...)
	}
	fmt.Println("rdsgate demo: a local AWS (moto), PostgreSQL and MariaDB as RDS, terraform apply, the proxy, two IAM-authenticated queries")

	// 1. The environment, in a process of its own that outlives this one.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "env.log"))
	if err != nil {
		return err
	}
	envCmd := exec.Command(self, "-dir", dir, "env")
	envCmd.Stdout, envCmd.Stderr = logf, logf
	envCmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := envCmd.Start(); err != nil {
		return err
	}
	logf.Close()
	_ = os.WriteFile(filepath.Join(dir, "env.pid"), []byte(strconv.Itoa(envCmd.Process.Pid)), 0o644)
	exited := make(chan error, 1)
	go func() { exited <- envCmd.Wait() }()
	envFile := filepath.Join(dir, "env.json")
	var env demo.Env
	for {
		if data, err := os.ReadFile(envFile); err == nil && json.Unmarshal(data, &env) == nil {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "env.log"))
			return fmt.Errorf("the environment stopped (%v):\n%s", err, log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(start) > 3*time.Minute {
			return errors.New("the environment did not come up within 3 minutes; see " + filepath.Join(dir, "env.log"))
		}
	}
	step("AWS emulator (moto) at %s; PostgreSQL and MariaDB with TLS behind RDS emulators", env.MotoURL)
	if env.AWSURL != env.MotoURL {
		step("IAM answers through %s, which lags like real IAM (RDSGATE_DEMO_IAM_LAG)", env.AWSURL)
	}
	for _, d := range env.Databases {
		step("registered RDS instance %-8s %-9s endpoint %s (resource id %s)", d.Name, d.Engine, d.Endpoint, d.ResourceID)
	}

	// 2. terraform apply of examples/complete with the provider built here.
	if err := testenv.WriteTerraformRC(filepath.Join(dir, "tfrc")); err != nil {
		return err
	}
	tf := testenv.TerraformAt(filepath.Join(dir, "tfrc"))
	root, _ := filepath.Abs(".")
	f := &demo.Flow{Root: root, Dir: dir, Bin: bin, Env: &env, TF: tf}
	out, err := f.Apply()
	_ = os.WriteFile(filepath.Join(dir, "terraform.log"), []byte(out), 0o644)
	if err != nil {
		return err
	}
	script, err := f.WriteScript()
	if err != nil {
		return err
	}
	var roleARN string
	var shards []string
	var roles map[string]string
	var stats map[string]int
	for name, v := range map[string]any{"proxy_role_arn": &roleARN, "shard_role_arns": &shards, "database_roles": &roles, "stats": &stats} {
		if err := f.Output(name, v); err != nil {
			return err
		}
	}
	step("terraform apply of examples/complete: IAM auth on both databases, role %s,", roleARN)
	step("      its bootstrap policy and boundary, %s, %s", policies.Count(stats["documents"], "connect policy document"), policies.Count(len(shards), "shard role"))
	fmt.Println()
	fmt.Printf("        %-44s %s\n", "PRINCIPAL (policy shards)", "DATABASES")
	byRole := map[string][]string{}
	for db, r := range roles {
		byRole[r] = append(byRole[r], db)
	}
	for _, r := range slices.Sorted(maps.Keys(byRole)) {
		sort.Strings(byRole[r])
		fmt.Printf("        %-44s %s\n", r[strings.Index(r, ":role/")+1:], strings.Join(byRole[r], ", "))
	}
	fmt.Printf("        %s in %s (lower bound %d)\n\n", policies.Count(stats["databases"], "database"), policies.Count(stats["documents"], "document"), stats["lower_bound"])

	// 3. The proxy, from the configuration apply produced.
	p, err := f.StartProxy(true)
	if err != nil {
		return err
	}
	pgHost, pgPort := p.Listener("orders")
	myHost, myPort := p.Listener("billing")
	step("rdsgate proxy started from terraform's proxy_config (%s): orders on %s:%s, billing on %s:%s",
		rel(filepath.Join(dir, "proxy.json")), pgHost, pgPort, myHost, myPort)

	// 4. Queries as the IAM-authenticated user.
	ctx := context.Background()
	pgOut, err := p.PSQL(ctx, demo.DBUser, "select item from orders where id = 1")
	if err != nil {
		return fmt.Errorf("psql through the proxy: %v: %s (proxy log: %s)", err, pgOut, p.Log)
	}
	step("psql  as %s -> orders:  %q", demo.DBUser, pgOut)
	myOut, err := p.MySQL(ctx, demo.DBUser, "select concat('invoice total ', total) from billing.invoices where id = 1")
	if err != nil {
		return fmt.Errorf("mysql through the proxy: %v: %s (proxy log: %s)", err, myOut, p.Log)
	}
	step("mysql as %s -> billing: %q", demo.DBUser, myOut)

	fmt.Printf(`
Connect by hand (no password: the proxy signs a fresh IAM token for each connection):
  psql "host=%s port=%s user=%s dbname=postgres"
  %s -h %s -P %s -u %s billing
Terraform against the demo's AWS:  %s plan   (or state list, apply, ...)
Logs: %s, %s.  Stop everything: make demo-down
`, pgHost, pgPort, demo.DBUser, mysqlName(), myHost, myPort, demo.DBUser, rel(script), rel(p.Log), rel(filepath.Join(dir, "env.log")))
	return nil
}

func mysqlName() string {
	if _, err := exec.LookPath("mysql"); err == nil {
		return "mysql"
	}
	return "mariadb"
}

func rel(p string) string {
	wd, _ := os.Getwd()
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// down stops the proxy and the environment and removes the demo's folder.
func down(dir string, verbose bool) error {
	stopped := 0
	for _, name := range []string{"proxy.pid", "env.pid"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 {
			continue
		}
		if syscall.Kill(pid, syscall.SIGTERM) == nil {
			stopped++
			for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if verbose {
		if stopped > 0 {
			fmt.Println("rdsgate demo stopped: the proxy, moto, PostgreSQL and MariaDB are gone, and " + rel(dir) + " is removed")
		} else {
			fmt.Println("no rdsgate demo was running; " + rel(dir) + " is removed")
		}
	}
	return nil
}

// runEnv is the background process: it starts the environment, says where
// everything is in env.json, and stops it all on SIGTERM.
func runEnv(dir string) error {
	t := &envT{dir: dir}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer t.cleanup()
	env, err := t.start()
	if err != nil {
		return err
	}
	data, _ := json.MarshalIndent(env, "", "  ")
	tmp := filepath.Join(dir, "env.json.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "env.json")); err != nil {
		return err
	}
	<-sig
	return nil
}

// envT gives the test harness what it needs outside a test: Fatal stops
// the start with an error, Cleanup runs when the environment stops.
type envT struct {
	dir      string
	mu       sync.Mutex
	cleanups []func()
	n        int
}

type fatal struct{ msg string }

func (t *envT) start() (env *demo.Env, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
	}()
	var o demo.Options
	if v := os.Getenv("RDSGATE_DEMO_IAM_LAG"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil {
			return nil, fmt.Errorf("RDSGATE_DEMO_IAM_LAG=%q is not a duration (for example 2s)", v)
		}
		o.IAMLag = d
	}
	return demo.StartWith(t, t.dir, o), nil
}

func (t *envT) Helper()                           {}
func (t *envT) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (t *envT) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (t *envT) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *envT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *envT) TempDir() string {
	t.mu.Lock()
	t.n++
	n := t.n
	t.mu.Unlock()
	d := filepath.Join(t.dir, "run", strconv.Itoa(n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func (t *envT) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
