package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
)

// Ports `make demo` gives its proxy, for people to type; tests choose
// free ones (Flow.FirstPort, Flow.HealthAddress).
const (
	DefaultFirstPort     = 15432
	DefaultHealthAddress = "127.0.0.1:19187"
)

// Flow is the Terraform and proxy half of the demo, over a running Env.
type Flow struct {
	Root string // the repository
	Dir  string // where state, logs and copies live (.tmp/demo)
	Bin  string // bin/rdsgate
	Env  *Env
	TF   *testenv.Terraform
	// FirstPort is the proxy's first database port (one per database, in
	// name order) and HealthAddress its health endpoint; zero: the defaults.
	FirstPort     int
	HealthAddress string
}

func (f *Flow) firstPort() int {
	if f.FirstPort == 0 {
		return DefaultFirstPort
	}
	return f.FirstPort
}

func (f *Flow) healthAddress() string {
	if f.HealthAddress == "" {
		return DefaultHealthAddress
	}
	return f.HealthAddress
}

// awsEnv is the environment of every process that talks to the emulated AWS.
func (f *Flow) awsEnv() map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID": testenv.AccessKeyID, "AWS_SECRET_ACCESS_KEY": testenv.SecretAccessKey, "AWS_REGION": Region,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		// moto has no replication delay to wait out before the apply lease
		// is read back.
		"RDSGATE_LEASE_SETTLE": "0s",
	}
}

// tfDir is the copy of examples/complete that terraform runs in.
func (f *Flow) tfDir() string { return filepath.Join(f.Dir, "terraform", "examples", "complete") }

// Terraform runs terraform with the demo's environment; it returns the
// output and the exit code.
func (f *Flow) Terraform(args ...string) (string, int, error) {
	cmd := exec.Command("terraform", args...)
	cmd.Dir = f.tfDir()
	cmd.Env = f.TF.Environ(f.awsEnv())
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code, err = ee.ExitCode(), nil
	}
	return string(out), code, err
}

// Vars are the complete example's variables for the emulated databases.
func (f *Flow) Vars() map[string]any {
	dbs, addrs := map[string]any{}, map[string]string{}
	for _, d := range f.Env.Databases {
		dbs[d.Name] = map[string]any{"identifier": d.Name, "db_users": []string{DBUser}, "labels": map[string]string{"env": "demo"}}
		addrs[d.Name] = d.Address
	}
	return map[string]any{
		"aws_endpoint": f.Env.AWSURL, "region": Region, "databases": dbs, "addresses": addrs,
		"ca_bundle": f.Env.CABundle, "proxy_assumes_role": true, "first_port": f.firstPort(), "health_address": f.healthAddress(),
		// The person running the proxy on a laptop assumes its role.
		"trusted_role_arns": []string{"arn:aws:iam::" + Account + ":root"},
	}
}

// Apply copies the example and the modules, then runs terraform init and
// apply against the emulated AWS.
func (f *Flow) Apply() (string, error) {
	work := filepath.Join(f.Dir, "terraform")
	if err := os.RemoveAll(work); err != nil {
		return "", err
	}
	for _, d := range []string{"examples", "modules"} {
		if err := os.CopyFS(filepath.Join(work, d), os.DirFS(filepath.Join(f.Root, d))); err != nil {
			return "", err
		}
	}
	vars, err := json.MarshalIndent(f.Vars(), "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(f.tfDir(), "terraform.tfvars.json"), vars, 0o644); err != nil {
		return "", err
	}
	var log strings.Builder
	for _, args := range [][]string{{"init", "-input=false", "-no-color"}, {"apply", "-auto-approve", "-input=false", "-no-color"}} {
		out, code, err := f.Terraform(args...)
		log.WriteString(out)
		if err != nil || code != 0 {
			return log.String(), fmt.Errorf("terraform %s failed (exit %d): %v\n%s", args[0], code, err, tail(out, 40))
		}
	}
	return log.String(), nil
}

// WriteScript writes DIR/terraform.sh, which runs terraform in the demo's
// copy of examples/complete with the demo's environment: for a person to
// look at the plan or change the example and apply again.
func (f *Flow) WriteScript() (string, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# terraform in the demo's examples/complete, against the demo's emulated AWS.\n")
	env := f.awsEnv()
	for k, v := range f.TF.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, env[k])
	}
	fmt.Fprintf(&b, "exec terraform -chdir='%s' \"$@\"\n", f.tfDir())
	path := filepath.Join(f.Dir, "terraform.sh")
	return path, os.WriteFile(path, []byte(b.String()), 0o755)
}

// Output reads a terraform output as JSON into v.
func (f *Flow) Output(name string, v any) error {
	out, code, err := f.Terraform("output", "-json", name)
	if err != nil || code != 0 {
		return fmt.Errorf("terraform output %s: exit %d %v: %s", name, code, err, out)
	}
	return json.Unmarshal([]byte(out), v)
}

// Proxy is a running rdsgate proxy.
type Proxy struct {
	Cmd    *exec.Cmd
	Config *proxyd.Config
	Log    string
	exited chan struct{} // closed when a child started without detach ends
}

// StartProxy writes the configuration apply produced and starts
// `rdsgate proxy start` with it. detach starts it in a session of its own
// that outlives the caller (make demo); its pid goes to proxy.pid.
func (f *Flow) StartProxy(detach bool) (*Proxy, error) {
	var raw string
	if err := f.Output("proxy_config", &raw); err != nil {
		return nil, err
	}
	conf := filepath.Join(f.Dir, "proxy.json")
	if err := os.WriteFile(conf, []byte(raw), 0o644); err != nil {
		return nil, err
	}
	cfg, err := proxyd.ParseConfig([]byte(raw), conf)
	if err != nil {
		return nil, err
	}
	// Refuse a taken port clearly, so that readiness below can only be
	// this child's: another make demo, or anything else, would answer.
	addrs := []string{cfg.HealthAddress}
	for _, d := range cfg.Databases {
		if d.Listen != "" && !strings.HasPrefix(d.Listen, "unix:") {
			addrs = append(addrs, d.Listen)
		}
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("the demo's proxy needs %s, which is taken (a make demo still up? make demo-down stops it): %v", a, err)
		}
		ln.Close()
	}
	logPath := filepath.Join(f.Dir, "proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	env := f.awsEnv()
	// The proxy's STS calls go through the front that tells the RDS
	// emulator about the credentials STS issues.
	env["AWS_ENDPOINT_URL_STS"] = f.Env.STSURL
	cmd := exec.Command(f.Bin, "proxy", "start", "--config", conf)
	cmd.Env = f.TF.Environ(env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if detach {
		_ = os.WriteFile(filepath.Join(f.Dir, "proxy.pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
	}
	p := &Proxy{Cmd: cmd, Config: cfg, Log: logPath}
	exited := make(chan struct{})
	if !detach {
		go func() { _ = cmd.Wait(); close(exited) }()
		p.exited = exited
	}
	// Ready when this child has said it listens and its health endpoint
	// (on an address that was free before it started) answers.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("the proxy exited before it was ready:\n%s", tail(string(log), 30))
		default:
		}
		log, _ := os.ReadFile(logPath)
		if strings.Contains(string(log), "rdsgate proxy started") {
			resp, err := http.Get("http://" + cfg.HealthAddress + "/readiness")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("the proxy did not become ready within 60s:\n%s", tail(string(log), 30))
}

// Stop ends a proxy started without detach and waits for it.
func (p *Proxy) Stop() {
	_ = p.Cmd.Process.Kill()
	if p.exited != nil {
		<-p.exited
	}
}

// Listener returns where the proxy serves a database.
func (p *Proxy) Listener(name string) (host, port string) {
	db := p.Config.Database(name)
	if db == nil {
		return "", ""
	}
	host, port, _ = net.SplitHostPort(db.Listen)
	return host, port
}

// PSQL runs psql through the proxy as user; no password: the proxy signs.
func (p *Proxy) PSQL(ctx context.Context, user, sql string) (string, error) {
	host, port := p.Listener("orders")
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable connect_timeout=10", host, port, user)
	return run(ctx, "psql", "-X", "-A", "-t", dsn, "-c", sql)
}

// MySQL runs the mysql client through the proxy as user.
func (p *Proxy) MySQL(ctx context.Context, user, sql string) (string, error) {
	host, port := p.Listener("billing")
	return run(ctx, mysqlClient(), "--no-defaults", "-h"+host, "-P"+port, "-u"+user, "-N", "-B", "--connect-timeout=10", "-e", sql)
}

func mysqlClient() string {
	if _, err := exec.LookPath("mysql"); err == nil {
		return "mysql"
	}
	return "mariadb"
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
