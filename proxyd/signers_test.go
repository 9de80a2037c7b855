package proxyd

import (
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// TestFallbackRoles: while an apply moves a database's permission between
// principals, the database (here the RDS emulator, asking which role signed
// the token) accepts only one of them at a time. The proxy logs in through
// the one that holds it, without the client noticing, and remembers it.
func TestFallbackRoles(t *testing.T) {
	t.Parallel()
	const (
		base   = "arn:aws:iam::123456789012:role/rdsgate-proxy"
		shard1 = "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/rdsgate-proxy-shard-001"
		shard2 = "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/rdsgate-proxy-shard-002"
	)
	m := testenv.StartMoto(t)
	var rec *testenv.STSRecorder
	var holder atomic.Value // the role name the databases accept now
	holder.Store("rdsgate-proxy-shard-002")
	authorize := func(keyID, user string) error {
		role, want := rec.Role(keyID), holder.Load().(string)
		if !strings.Contains(role, ":assumed-role/"+want+"/") {
			return fmt.Errorf("%s does not hold rds-db:connect (%s does)", role, want)
		}
		return nil
	}
	var pgEmu, myEmu *rdsemu.Server
	e := newEnv(t, func(e *env, c *Config) {
		rec = testenv.StartSTSRecorder(t, m.URL, func(id, secret, session string) { e.keys.Add(id, secret, session) })
		pgEmu = rdsemu.Postgres(t, e.pg, rdsemu.Options{Keys: e.keys, Authorize: authorize})
		myEmu = rdsemu.MySQL(t, e.my, emuPassword, rdsemu.Options{Keys: e.keys, Authorize: authorize})
		c.AssumeRoleARN = base
		for i, ep := range []string{pgEmu.Endpoint, myEmu.Endpoint} {
			c.Databases[i].Endpoint = ep
			c.Databases[i].AssumeRoleARN = shard1
			c.Databases[i].FallbackRoleARNs = []string{shard2, "", shard1}
		}
	})
	e.srv.Close()
	// STS through a layer that refuses AssumeRole for one role on demand.
	var unassumable atomic.Value
	unassumable.Store("")
	stsFront := testenv.StartFaultProxy(t, rec.URL)
	stsFront.DecideOn(func(op string, form url.Values) *testenv.Fault {
		if op == "AssumeRole" && form.Get("RoleArn") == unassumable.Load().(string) {
			return &testenv.Fault{Status: 403, Code: "AccessDenied", Message: "not authorized to perform: sts:AssumeRole on resource: " + form.Get("RoleArn")}
		}
		return nil
	})
	cfg := e.awsConfig()
	cfg.BaseEndpoint = aws.String(stsFront.URL)
	e.start(WithAWSConfig(cfg))
	fallbacks := func() string {
		_, metrics := get(t, "http://"+e.srv.HealthAddr()+"/metrics")
		return grepLines(metrics, "rdsgate_proxy_signer_fallbacks_total{")
	}
	pgSelect := func(when string) {
		t.Helper()
		if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1"); err != nil || out != "1" {
			t.Fatalf("%s: %v %s (emulator: %s)", when, err, out, pgEmu.LastRefusal())
		}
	}
	// shard-001 is refused, shard-002 holds it: one fallback, then straight
	// to shard-002.
	pgSelect("moved to shard-002")
	pgSelect("again")
	host, port := splitAddr(t, e.srv.Addr("my"))
	if out, err := mysqlCLI(t, host+":"+port, "app", "-e", "select 1"); err != nil || !strings.Contains(out, "1") {
		t.Fatalf("mysql, moved to shard-002: %v %s (emulator: %s)", err, out, myEmu.LastRefusal())
	}
	if got := fallbacks(); got != `rdsgate_proxy_signer_fallbacks_total{database="my"} 1`+"\n"+`rdsgate_proxy_signer_fallbacks_total{database="pg"} 1` {
		t.Fatalf("fallbacks after the first logins:\n%s", got)
	}
	// Now only the proxy's own principal ("") holds it.
	holder.Store("rdsgate-proxy")
	pgSelect("moved to the base role")
	pgSelect("again")
	if got := fallbacks(); !strings.Contains(got, `{database="pg"} 3`) {
		t.Fatalf("shard-002 refused, then the base role (shard-001 is tried at its turn): want 3 fallbacks in all, got\n%s", got)
	}
	// A role whose credentials cannot be had (IAM does not show a new
	// shard role everywhere yet, or its trust changed) is passed over too.
	holder.Store("rdsgate-proxy-shard-001")
	unassumable.Store(shard2)
	e.srv.creds.forgetRoles() // as when the cached role credentials run out
	pgSelect("shard-002 cannot be assumed, shard-001 holds it")
	host2, port2 := splitAddr(t, e.srv.Addr("my"))
	if out, err := mysqlCLI(t, host2+":"+port2, "app", "-e", "select 1"); err != nil || !strings.Contains(out, "1") {
		t.Fatalf("mysql, shard-002 cannot be assumed: %v %s (emulator: %s)", err, out, myEmu.LastRefusal())
	}
	unassumable.Store("")

	// Nobody holds it: the client gets the database's own refusal.
	holder.Store("nobody")
	out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1")
	if err == nil || !strings.Contains(out, "PAM authentication failed") {
		t.Fatalf("no principal holds the permission: %v %s", err, out)
	}
	if n := pgEmu.Refused.Load(); n < 3 {
		t.Fatalf("the emulator refused %d logins, want every principal tried", n)
	}
}

// forgetRoles drops the cached role credentials and tokens, as when they
// run out.
func (c *credentials) forgetRoles() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roles = map[string]aws.CredentialsProvider{}
	c.entries = map[string]cachedEntry{}
}
