package testenv

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// BuildRdsgate builds the rdsgate command from the tree the test runs in
// (or from tree, when given: a git worktree of an older version) into a
// temporary folder and returns the binary's path.
func BuildRdsgate(t T, tree ...string) string {
	t.Helper()
	dir := RepoRoot()
	if len(tree) > 0 {
		dir = tree[0]
	}
	bin := filepath.Join(t.TempDir(), "rdsgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rdsgate")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rdsgate in %s: %v\n%s", dir, err, out)
	}
	return bin
}

// ProxyProcess is `rdsgate proxy start` running as its own process, as a
// user runs it (and as pgbouncer runs beside it in benchmarks).
type ProxyProcess struct {
	PID    int
	Health string // host:port of the health endpoint
	logs   *LockedBuffer
}

// Logs is what the proxy wrote to stderr so far.
func (p *ProxyProcess) Logs() string { return p.logs.String() }

// StartProxyProcess writes cfg (a proxyd.Config, or anything that marshals
// to one) to a file and runs the binary with it. It returns once
// /startup answers 200 at healthAddress (a free port the caller chose) while
// the child is still running, and fails at once if the child exits first,
// as it does when it cannot bind its ports. The process is killed at
// cleanup.
func StartProxyProcess(t T, bin string, cfg any, healthAddress string, env ...string) *ProxyProcess {
	t.Helper()
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "proxy.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "proxy", "start", "--config", path)
	// Tokens are signed with these keys; the servers in tests trust loopback
	// TLS or check them in an emulator.
	cmd.Env = append(append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDTESTENV", "AWS_SECRET_ACCESS_KEY=testenv", "AWS_EC2_METADATA_DISABLED=true"), env...)
	p := &ProxyProcess{Health: healthAddress, logs: &LockedBuffer{}}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.PID = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); <-exited })
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("rdsgate proxy start exited before it was ready:\n%s", p.Logs())
		default:
		}
		resp, err := client.Get("http://" + healthAddress + "/startup")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				select {
				case <-exited:
					t.Fatalf("rdsgate proxy start exited, yet %s answered: another process holds the port:\n%s", healthAddress, p.Logs())
				default:
					return p
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rdsgate proxy start was not ready within 60s (last: %v):\n%s", err, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
