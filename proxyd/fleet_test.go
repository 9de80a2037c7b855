package proxyd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/test/tcplb"
)

// TestFleetBehindALoadBalancer: three gateway replicas from one
// configuration behind a TCP load balancer that routes by their
// /readiness, as a Kubernetes Service or an NLB does. Sessions spread over
// all three; a replica killed mid-run loses only its own sessions, and new
// ones go to the others; a replica told to stop (SIGTERM) fails readiness
// at once, takes no new sessions and lets its open ones finish; every
// audit line names the replica that served it.
func TestFleetBehindALoadBalancer(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	dir := t.TempDir()
	replicas := []*Server{}
	audits := []string{}
	for i := range 3 {
		cfg := *g.cfg
		gw := *cfg.Gateway
		cfg.Gateway = &gw
		cfg.Databases = append([]Database(nil), g.cfg.Databases...)
		cfg.Replica = fmt.Sprintf("gw-%d", i+1)
		cfg.AuditLog = filepath.Join(dir, cfg.Replica+".audit")
		cfg.DrainTimeout = Duration(time.Minute)
		audits = append(audits, cfg.AuditLog)
		e := &env{t: t, keys: g.keys, cfg: &cfg, logs: g.logs, pg: g.pg, pgEmu: g.pgEmu, my: g.my, myEmu: g.myEmu}
		e.start()
		replicas = append(replicas, e.srv)
	}
	g.srv.Close() // the environment's own proxy is not part of the fleet
	var backends []tcplb.Backend
	for _, r := range replicas {
		backends = append(backends, tcplb.Backend{Addr: r.Addr("gateway-postgres"), Health: "http://" + r.HealthAddr() + "/readiness"})
	}
	lb := tcplb.Start(t, 50*time.Millisecond, backends...)
	_, port := splitAddr(t, lb.Addr)
	dsn := "host=localhost port=" + port + " user=app dbname=pg/postgres sslmode=verify-full sslrootcert=" + g.serverCA.PEMFile +
		" sslcert=" + g.certs["alice"][0] + " sslkey=" + g.certs["alice"][1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	open := func(n int) []*pgx.Conn {
		t.Helper()
		var conns []*pgx.Conn
		for i := range n {
			c, err := pgx.Connect(ctx, dsn+fmt.Sprintf(" application_name=client-%d", i))
			if err != nil {
				t.Fatalf("session %d through the load balancer: %v", i, err)
			}
			conns = append(conns, c)
		}
		return conns
	}
	query := func(c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "select 1").Scan(&one)
	}
	sessions := open(12)
	for i, r := range replicas {
		if r.Active() == 0 {
			t.Fatalf("replica %d serves no session of 12 (routed %d)", i+1, lb.Routed[i].Load())
		}
	}
	// Kill the second replica: only its sessions end.
	lost := int(lb.Routed[1].Load()) // every session routed there is open
	replicas[1].Close()
	failed := 0
	for _, c := range sessions {
		if query(c) != nil {
			failed++
		}
	}
	if failed != lost {
		t.Fatalf("killing one replica ended %d sessions, but it served %d", failed, lost)
	}
	// Drain the third: readiness fails at once, open sessions go on, new
	// ones go to the first.
	var draining []*pgx.Conn
	for _, c := range sessions {
		if query(c) == nil {
			draining = append(draining, c)
		}
	}
	onThird := replicas[2].Active()
	drained := make(chan error, 1)
	go func() { drained <- replicas[2].Shutdown(ctx) }()
	for lb.Healthy(2) || lb.Healthy(1) {
		select {
		case <-ctx.Done():
			t.Fatal("the load balancer still routes to a stopped or draining replica")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Where new sessions went, as the load balancer routed them (a
	// replica's own count also moves with connections that come and go).
	before, third := lb.Routed[0].Load(), lb.Routed[2].Load()
	fresh := open(4)
	if got, other := lb.Routed[0].Load()-before, lb.Routed[2].Load()-third; got != 4 || other != 0 {
		t.Fatalf("of 4 new sessions while the third replica drains, the first took %d and the draining one %d", got, other)
	}
	for _, c := range append(draining, fresh...) {
		if err := query(c); err != nil {
			t.Fatalf("a session on a live or draining replica failed: %v", err)
		}
	}
	if n := replicas[2].Active(); n == 0 || n > onThird {
		t.Fatalf("the draining replica has %d sessions, had %d: its sessions must go on, and no new one come", n, onThird)
	}
	for _, c := range append(sessions, fresh...) {
		_ = c.Close(ctx)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	// Audit lines: each replica's own name on each of its lines.
	for i, path := range audits {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		for _, line := range lines {
			var e AuditEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil || e.Replica != fmt.Sprintf("gw-%d", i+1) {
				t.Fatalf("replica %d wrote %q (%v)", i+1, line, err)
			}
		}
	}
}

// TestIdentityTokenAtAnyReplica: an IAM identity token is proven to STS,
// not remembered by the replica that saw it first, so one a client signed
// works at every replica of a fleet (a client's connections land on any of
// them).
func TestIdentityTokenAtAnyReplica(t *testing.T) {
	g := newIAMEnv(t) // not parallel: psql's password goes in PGPASSWORD
	token := g.token(t, "alice", gatewayAudience, time.Now())
	if out, err := g.psql(t, token, "app", "pg/postgres"); err != nil || !strings.Contains(out, "app") {
		t.Fatalf("first replica: %v %s", err, out)
	}
	cfg := *g.cfg
	gw := *cfg.Gateway
	cfg.Gateway = &gw
	cfg.Databases = append([]Database(nil), g.cfg.Databases...)
	cfg.AuditLog = filepath.Join(t.TempDir(), "second.audit")
	cfg.Replica = "second"
	second := &env{t: t, keys: g.keys, cfg: &cfg, logs: g.logs}
	second.start()
	first := g.srv
	g.srv = second.srv
	defer func() { g.srv = first }()
	if out, err := g.psql(t, token, "app", "pg/postgres"); err != nil || !strings.Contains(out, "app") {
		t.Fatalf("the same token at the second replica: %v %s", err, out)
	}
	data, err := os.ReadFile(cfg.AuditLog)
	if err != nil || !strings.Contains(string(data), `"replica":"second"`) || !strings.Contains(string(data), "assumed-role/data-engineers/alice@example.com") {
		t.Fatalf("second replica's audit: %v %s", err, data)
	}
}
