package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
	"github.com/rdsgate/rdsgate/test/iamcheck/iamread"
	"github.com/rdsgate/rdsgate/test/iamcheck/planworld"
)

// writeFleet writes an inventory of databases numbered from..to-1.
func writeFleet(t *testing.T, path string, ids []int) {
	t.Helper()
	inv := policies.Inventory{}
	for _, k := range ids {
		users := []string{"app", "readonly"}
		if k%3 == 0 {
			users = []string{"*"}
		}
		inv.Databases = append(inv.Databases, policies.Database{Name: fmt.Sprintf("db%05d", k), Engine: policies.EnginePostgres,
			Kind: policies.KindInstance, ResourceID: fmt.Sprintf("db-%026d", k), Region: "us-east-1", AccountID: testenv.AccountID, DBUsers: users})
	}
	data, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func ids(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestTourTwiceOverAChangedFleetHasNoGap runs the README's plan-then-apply
// twice, over 2,000 databases and then 1,500 of them plus 500 new ones (800
// and 600+200 under the race detector), and
// after every write of the second apply reads IAM (through a proxy in front
// of moto that holds the answer until the check is done) and judges it with
// the independent model. Planned against IAM (the default with credentials)
// and afresh (--fresh, the case that had gaps before).
func TestTourTwiceOverAChangedFleetHasNoGap(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			m := testenv.StartMoto(t)
			fp := testenv.StartFaultProxy(t, m.URL)
			c := awsEnvAt(t, fp.URL)
			createRole(t, c, "rdsgate-proxy")
			direct, err := bootstrap.Connect(context.Background(), bootstrap.Config{EndpointURL: m.URL, Region: "us-east-1"})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			inv1, inv2 := filepath.Join(dir, "inv1.json"), filepath.Join(dir, "inv2.json")
			plan1, plan2 := filepath.Join(dir, "plan1.json"), filepath.Join(dir, "plan2.json")
			n := 2000
			if raceEnabled {
				n = 800
			}
			writeFleet(t, inv1, ids(0, n))
			writeFleet(t, inv2, ids(n/4, n+n/4))
			planArgs := func(inv, out string) []string {
				args := []string{"shards", "plan", "--inventory", inv, "--base-role", "rdsgate-proxy", "--output", out}
				if fresh {
					args = append(args, "--fresh")
				}
				return args
			}
			for _, args := range [][]string{planArgs(inv1, plan1), {"shards", "apply", "--plan", plan1, "--yes"}, planArgs(inv2, plan2)} {
				if r := run(t, "", args...); r.code != 0 {
					t.Fatalf("%s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
			data, err := os.ReadFile(plan2)
			if err != nil {
				t.Fatal(err)
			}
			desired, err := policies.ReadPlan(data, plan2)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			who := iamread.Principal{Kind: "role", Name: "rdsgate-proxy", ShardPath: desired.Settings.ShardRolePath}
			start, err := iamread.Read(ctx, direct.IAM, who)
			if err != nil {
				t.Fatal(err)
			}
			want := planworld.Add(iamcheck.New(desired.Base.ARN, "", iamcheck.Quotas{}), desired)
			keep := iamcheck.Survivors(start, want)
			if len(keep) < n {
				t.Fatalf("only %d requests survive", len(keep))
			}
			var mu sync.Mutex
			var gaps []string
			writes := 0
			fp.After(func(op string, status int) {
				if status != 200 || !bootstrap.IsWrite(op) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				writes++
				w, err := iamread.Read(ctx, direct.IAM, who)
				if err != nil {
					gaps = append(gaps, fmt.Sprintf("after write %d (%s): %v", writes, op, err))
				} else if missing := w.Missing(keep); len(missing) > 0 {
					gaps = append(gaps, fmt.Sprintf("after write %d (%s): %d database users unreachable, first %s", writes, op, len(missing), missing[0]))
				}
			})
			r := run(t, "", "shards", "apply", "--plan", plan2, "--yes")
			fp.After(nil)
			if r.code != 0 {
				t.Fatalf("second apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if len(gaps) > 0 {
				t.Fatalf("gap in access during the second apply:\n%s", strings.Join(gaps, "\n"))
			}
			if writes < 5 {
				t.Fatalf("only %d writes were checked", writes)
			}
			if r := run(t, "", "drift", "--plan", plan2); r.code != 0 {
				t.Fatalf("drift after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			t.Logf("second apply: %d writes, each followed by a check of %d database users", writes, len(keep))
		})
	}
}
