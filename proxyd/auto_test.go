package proxyd

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAutoReadiness: a proxy in automatic mode is not ready until its
// first cycle has run (a replica behind a load balancer would otherwise
// refuse the clients of every database it has not found yet); a cycle that
// fails still makes it ready, serving what the file lists.
func TestAutoReadiness(t *testing.T) {
	t.Parallel()
	release := make(chan error)
	e := newEnv(t, nil)
	e.srv.Close()
	e.cfg.AssumeRoleARN = "arn:aws:iam::123456789012:role/rdsgate-proxy"
	e.cfg.Auto = &Auto{Interval: Duration(time.Hour)}
	e.start(WithAutomatic(func(ctx context.Context, current *Config, serve func([]Database) error) ([]Database, AutoReport, error) {
		select {
		case err := <-release:
			return nil, AutoReport{}, err
		case <-ctx.Done():
			return nil, AutoReport{}, ctx.Err()
		}
	}))
	code, body := get(t, "http://"+e.srv.HealthAddr()+"/readiness")
	if code != 503 || !strings.Contains(body, "first automatic mode cycle") {
		t.Fatalf("before the first cycle: %d %s", code, body)
	}
	release <- errTest
	for deadline := time.Now().Add(30 * time.Second); ; {
		if code, _ = get(t, "http://"+e.srv.HealthAddr()+"/readiness"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after a failed first cycle: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := e.srv.AutoStatus(); st.Failures != 1 || st.Error == "" {
		t.Fatalf("status: %+v", st)
	}
}

var errTest = errors.New("discovery failed")
