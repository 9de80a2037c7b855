package app

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rds"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// readmeCommands returns the commands of README.md's shell blocks, in
// order: continuation lines joined, comment lines and trailing comments
// dropped.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in, cont := false, ""
	trailing := regexp.MustCompile(`\s+#\s.*$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		}
		if !in || strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont += strings.TrimSuffix(line, `\`)
			continue
		}
		cmds = append(cmds, strings.TrimSpace(trailing.ReplaceAllString(cont+line, "")))
		cont = ""
	}
	return cmds
}

// TestREADMECommands runs every command the README shows, in order, the
// way a reader would: rdsgate commands against moto (standing in for the
// reader's account, with the proxy's role and two databases), make
// commands checked for their targets (CI runs make test itself, and the
// demo's flow is TestDemoEndToEnd). A command of any other kind fails the
// test: the README must not show what no test runs.
func TestREADMECommands(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	api, err := c.RDS("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range []struct{ id, engine string }{{"orders", "postgres"}, {"billing", "mysql"}} {
		if _, err := api.CreateDBInstance(context.Background(), &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(db.id), Engine: aws.String(db.engine),
			DBInstanceClass: aws.String("db.t4g.micro"), MasterUsername: aws.String("admin"), MasterUserPassword: aws.String("password-password"),
			AllocatedStorage: aws.Int32(20), EnableIAMDatabaseAuthentication: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	bin := "" // what the README's make install installs
	if err := os.CopyFS(filepath.Join(work, "examples"), os.DirFS(filepath.Join(testenv.RepoRoot(), "examples"))); err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("found %d commands in the README", len(cmds))
	}
	for _, cmd := range cmds {
		fields := strings.Fields(cmd)
		switch fields[0] {
		case "make":
			if fields[1] == "install" {
				// Installed for real, where the reader's PATH would find it.
				prefix := filepath.Join(work, "prefix")
				install := exec.Command("make", "install", "PREFIX="+prefix, "BIN="+filepath.Join(work, "build"))
				install.Dir = testenv.RepoRoot()
				if out, err := install.CombinedOutput(); err != nil {
					t.Fatalf("README: %s: %v\n%s", cmd, err, out)
				}
				bin = filepath.Join(prefix, "bin", "rdsgate")
				continue
			}
			check := exec.Command("make", "-n", fields[1])
			check.Dir = testenv.RepoRoot()
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("README: %s: no such make target: %v\n%s", cmd, err, out)
			}
		case "rdsgate":
			if bin == "" {
				t.Fatalf("README: %s comes before the make install that puts rdsgate on the PATH", cmd)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			run := exec.CommandContext(ctx, "bash", "-c", "set -o pipefail; "+cmd)
			run.Dir = work
			run.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
			out, err := run.CombinedOutput()
			cancel()
			if err != nil && strings.HasPrefix(cmd, "rdsgate doctor") && onlyReachFails(string(out)) {
				// moto's endpoints resolve nowhere: doctor finding them
				// unreachable is the truth here, and its other checks passed.
				err = nil
			}
			if err != nil {
				t.Fatalf("README: %s\nfailed: %v\n%s", cmd, err, out)
			}
			t.Logf("$ %s\n%s", cmd, firstLines(string(out), 4))
		default:
			t.Errorf("README shows %q, which no test runs", cmd)
		}
	}
	// The tour ends with files a reader would use next.
	for _, f := range []string{"inventory.json", "plan.json", "proxy.json", "rdsgate-proxy.service"} {
		if _, err := os.Stat(filepath.Join(work, f)); err != nil {
			t.Errorf("after the README's commands, %s is missing: %v", f, err)
		}
	}
}

// onlyReachFails reports whether doctor's output failed reach checks and
// nothing else.
func onlyReachFails(out string) bool {
	fails := 0
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "[FAIL] "); ok {
			if !strings.HasPrefix(rest, "reach ") {
				return false
			}
			fails++
		}
	}
	return fails > 0
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
