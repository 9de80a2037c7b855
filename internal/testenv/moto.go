package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Moto is a moto server on a loopback port of its own.
type Moto struct {
	URL string
	out *LockedBuffer
}

// Test credentials: moto accepts any.
const (
	AccessKeyID     = "AKIAIOSFODNN7EXAMPLE"
	SecretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	// AccountID is the account moto puts everything in.
	AccountID = "123456789012"
)

// StartMoto starts moto_server for the test and stops it at cleanup.
func StartMoto(t T) *Moto {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server is not on the PATH: install it with pip install 'moto[server]' (.ci/run does): %v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		out := &LockedBuffer{}
		cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting moto_server: %v", err)
		}
		m := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: out}
		if lastErr = m.wait(cmd, 30*time.Second); lastErr == nil {
			// wait reaps the process once it is killed.
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			return m
		}
		_ = cmd.Process.Kill()
	}
	t.Fatalf("moto_server did not start: %v", lastErr)
	return nil
}

func (m *Moto) wait(cmd *exec.Cmd, limit time.Duration) error {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v): %s", err, m.out)
		default:
		}
		if resp, err := client.Get(m.URL + "/moto-api/"); err == nil {
			resp.Body.Close()
			// Keep reaping the process in the background; Wait was called.
			go func() { <-exited }()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not answering after %s: %s", limit, m.out)
}

// Reset drops every resource, as a fresh server would have.
func (m *Moto) Reset(t T) {
	t.Helper()
	resp, err := http.Post(m.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LockedBuffer collects a child process's output while a test reads it:
// os/exec copies each pipe into it from its own goroutine, so one buffer
// given as both Stdout and Stderr is written from two.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *LockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *LockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// T is what the harness needs of a test: *testing.T and *testing.B have it,
// and so does the demo's environment, which runs the same parts outside
// a test (test/demo).
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}
