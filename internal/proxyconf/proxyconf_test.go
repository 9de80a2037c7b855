package proxyconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

func inventory(names ...string) *policies.Inventory {
	inv := &policies.Inventory{}
	for _, n := range names {
		engine, port := policies.EnginePostgres, 5432
		if strings.HasPrefix(n, "shop") {
			engine, port = policies.EngineMySQL, 3306
		}
		inv.Databases = append(inv.Databases, policies.Database{Name: n, Engine: engine, Kind: policies.KindInstance, Region: "us-east-1",
			AccountID: "123456789012", Endpoint: n + ".abc.us-east-1.rds.amazonaws.com", Port: port, DBUsers: []string{"app"}})
	}
	return inv
}

func listeners(cfg *proxyd.Config) map[string]string {
	out := map[string]string{}
	for _, d := range cfg.Databases {
		out[d.Name] = d.Listen
	}
	return out
}

// The trial that found it: adding database "search" moved MySQL "shop"
// from 15435 to 15436 and gave 15435 to a PostgreSQL database.
func TestPortsNeverMove(t *testing.T) {
	t.Parallel()
	o := Options{CABundle: "ca.pem"}
	first, err := FromInventory(inventory("analytics", "ledger", "orders", "shop"), nil, "", o)
	if err != nil {
		t.Fatal(err)
	}
	before := listeners(first)
	if before["shop"] != "127.0.0.1:15435" {
		t.Fatalf("first assignment: %v", before)
	}
	o.Previous = first
	second, err := FromInventory(inventory("analytics", "ledger", "orders", "search", "shop", "billing"), nil, "", o)
	if err != nil {
		t.Fatal(err)
	}
	after := listeners(second)
	for name, l := range before {
		if after[name] != l {
			t.Errorf("%s moved from %s to %s", name, l, after[name])
		}
	}
	if after["billing"] != "127.0.0.1:15436" || after["search"] != "127.0.0.1:15437" {
		t.Errorf("new databases: billing %s, search %s; want the free ports 15436 and 15437 in name order", after["billing"], after["search"])
	}
	// A removed database frees its port for the next new one; the rest stay.
	o.Previous = second
	third, err := FromInventory(inventory("analytics", "orders", "search", "shop", "billing", "zeta"), nil, "", o)
	if err != nil {
		t.Fatal(err)
	}
	if got := listeners(third); got["zeta"] != "127.0.0.1:15433" || got["shop"] != after["shop"] || got["search"] != after["search"] {
		t.Errorf("after removing ledger: %v", got)
	}
}

func TestPinnedPorts(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c"}
	got, err := AssignPorts(names, 15432, map[string]int{"c": 15432}, nil)
	if err != nil || got["c"] != 15432 || got["a"] != 15433 || got["b"] != 15434 {
		t.Fatalf("pin: %v %v", got, err)
	}
	if ListenPort("unix:/run/rdsgate/.s.PGSQL.15433") != 15433 || ListenPort("127.0.0.1:15432") != 15432 || ListenPort("unix:/run/rdsgate/shop.sock") != 0 {
		t.Fatal("ListenPort")
	}
	prev := map[string]int{"a": 15432, "b": 15433}
	if got, err = AssignPorts(names, 15432, nil, prev); err != nil || got["a"] != 15432 || got["b"] != 15433 || got["c"] != 15434 {
		t.Fatalf("previous: %v %v", got, err)
	}
	for _, c := range []struct {
		pins map[string]int
		want string
	}{
		{map[string]int{"c": 15432}, "port 15432 is pinned for c, but a listens on it already: clients of a would reach c"},
		{map[string]int{"a": 6000, "c": 6000}, "port 6000 is pinned for both a and c: give one of them another port"},
		{map[string]int{"gone": 7000}, "a port is pinned for gone, which is not one of the databases: remove the pin"},
		{map[string]int{"a": 70000}, "the port pinned for a, 70000, is not a TCP port (1-65535)"},
	} {
		_, err := AssignPorts(names, 15432, c.pins, prev)
		if err == nil || !errors.Is(err, policies.ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pins %v: %v, want %q", c.pins, err, c.want)
		}
	}
	// Moving a deliberately: pin it, and the one whose port it takes.
	if got, err = AssignPorts(names, 15432, map[string]int{"a": 15440, "c": 15432}, prev); err != nil || got["a"] != 15440 || got["c"] != 15432 || got["b"] != 15433 {
		t.Fatalf("deliberate move: %v %v", got, err)
	}
}

// TestFromPlanServesRedshift: Redshift entries of the inventory are not in
// the plan (no rds-db:connect) but are served, as their service, through
// the proxy's own principal.
func TestFromPlanServesRedshift(t *testing.T) {
	inv := &policies.Inventory{Databases: []policies.Database{
		{Name: "orders", Engine: policies.EnginePostgres, Kind: policies.KindInstance, ResourceID: "db-ABCDEFGHIJKLMNOPQRSTUVWXY1", Region: "us-east-1",
			AccountID: "123456789012", Endpoint: "orders.abc.us-east-1.rds.amazonaws.com", Port: 5432, DBUsers: []string{"app"}},
		{Name: "warehouse", Engine: policies.EngineRedshift, Kind: policies.KindCluster, Identifier: "warehouse", Region: "us-east-1",
			AccountID: "123456789012", Endpoint: "warehouse.abc.us-east-1.redshift.amazonaws.com", Port: 5439, DBUsers: []string{"*"}},
		{Name: "analytics", Engine: policies.EngineRedshiftServerless, Kind: policies.KindWorkgroup, Identifier: "analytics", Region: "us-east-1",
			AccountID: "123456789012", Endpoint: "analytics.123456789012.us-east-1.redshift-serverless.amazonaws.com", Port: 5439, DBUsers: []string{"*"}},
	}}
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	plan, err := policies.NewPlan(policies.PlanInput{Inventory: inv, Quotas: policies.DefaultQuotas(), Target: policies.Target{Kind: policies.PrincipalRole, Name: "proxy"}})
	if err != nil || len(plan.Databases) != 1 {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	cfg, err := FromPlan(plan, inv, Options{CABundle: "/etc/rdsgate/global-bundle.pem"})
	if err != nil {
		t.Fatal(err)
	}
	w, a := cfg.Database("warehouse"), cfg.Database("analytics")
	if w == nil || a == nil || w.Service != proxyd.ServiceRedshift || w.Cluster != "warehouse" || a.Service != proxyd.ServiceRedshiftServerless ||
		a.Workgroup != "analytics" || w.Protocol != proxyd.ProtocolPostgres || w.AssumeRoleARN != "" || cfg.Database("orders") == nil {
		t.Fatalf("config: %+v", cfg.Databases)
	}
}
