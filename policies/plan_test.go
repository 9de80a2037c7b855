package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

const testAccount = "123456789012"

var testRegions = []string{"us-east-1", "us-west-2", "eu-west-1"}

// resourceID makes a valid, unique resource id of a kind from a number.
func resourceID(kind ResourceKind, n int) string {
	switch kind {
	case KindCluster:
		return fmt.Sprintf("cluster-%026d", n)
	case KindProxy:
		return fmt.Sprintf("prx-%017x", n)
	}
	return fmt.Sprintf("db-%026d", n)
}

// uniformInventory has n us-east-1 instances that allow any user.
func uniformInventory(n int) *Inventory {
	inv := &Inventory{Databases: make([]Database, n)}
	for i := range inv.Databases {
		inv.Databases[i] = Database{Name: fmt.Sprintf("db%06d", i), Engine: EnginePostgres, Kind: KindInstance,
			ResourceID: resourceID(KindInstance, i), Region: "us-east-1", AccountID: testAccount, DBUsers: []string{"*"}}
	}
	return inv
}

type invGen struct {
	r    *rand.Rand
	next int
}

func (g *invGen) database() Database {
	g.next++
	kinds := []ResourceKind{KindInstance, KindInstance, KindCluster, KindProxy}
	kind := kinds[g.r.IntN(len(kinds))]
	engine := EnginePostgres
	if kind == KindCluster {
		engine = EngineAuroraMySQL
	}
	db := Database{Name: fmt.Sprintf("db-%05d", g.next), Engine: engine, Kind: kind,
		ResourceID: resourceID(kind, g.next), Region: testRegions[g.r.IntN(len(testRegions))], AccountID: testAccount}
	db.DBUsers = g.users()
	return db
}

func (g *invGen) users() []string {
	if g.r.IntN(3) == 0 {
		return []string{"*"}
	}
	pool := []string{"app", "readonly", "migrator", "analyst_with_a_longer_name", "b"}
	g.r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return slices.Clone(pool[:1+g.r.IntN(3)])
}

func (g *invGen) inventory(n int) *Inventory {
	inv := &Inventory{}
	for range n {
		db := g.database()
		inv.Databases = append(inv.Databases, db)
		// Sometimes a second name for the same resource, like an Aurora reader endpoint.
		if g.r.IntN(15) == 0 {
			alias := db
			alias.Name += "-reader"
			alias.DBUsers = g.users()
			inv.Databases = append(inv.Databases, alias)
		}
	}
	return inv
}

// mutate returns a changed copy: databases removed, added, renamed and with
// changed users.
func (g *invGen) mutate(inv *Inventory) *Inventory {
	out := &Inventory{}
	for _, db := range inv.Databases {
		switch g.r.IntN(12) {
		case 0: // removed
		case 1:
			db.DBUsers = g.users()
			out.Databases = append(out.Databases, db)
		case 2:
			db.Name += "-renamed"
			out.Databases = append(out.Databases, db)
		default:
			out.Databases = append(out.Databases, db)
		}
	}
	for range g.r.IntN(len(inv.Databases)/4 + 2) {
		out.Databases = append(out.Databases, g.database())
	}
	return out
}

func randomInput(r *rand.Rand) PlanInput {
	q := DefaultQuotas()
	q.PolicySize = 300 + r.IntN(2000)
	q.RolePolicySize = 300 + r.IntN(3000)
	q.UserPolicySize = 300 + r.IntN(1500)
	q.AttachedPoliciesPerRole = r.IntN(6)
	q.AttachedPoliciesPerUser = r.IntN(6)
	t := Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: r.IntN(25), AccountID: testAccount}
	if r.IntN(3) == 0 {
		t.Kind, t.Name = PrincipalUser, "alice"
	}
	if r.IntN(3) == 0 {
		t.ReservedInline = r.IntN(200)
	}
	if r.IntN(3) == 0 {
		t.ReservedManaged = r.IntN(q.attached(t.Kind) + 1)
	}
	if r.IntN(4) == 0 {
		t.ExternalID = "ext-123"
	}
	return PlanInput{Target: t, Quotas: q}
}

// independentSize counts a document's characters through encoding/json
// rather than the canonical writer.
func independentSize(t *testing.T, d *Document) int {
	t.Helper()
	var v any
	if err := json.Unmarshal(d.JSON(), &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		t.Fatal(err)
	}
	return utf8.RuneCount(compact.Bytes())
}

// dbARNs are the rds-db:connect resources one inventory entry needs.
func dbARNs(db Database, partition string) []string {
	var out []string
	for _, u := range db.DBUsers {
		out = append(out, DBUserARN{Partition: partition, Region: db.Region, AccountID: db.AccountID, ResourceID: db.ResourceID, DBUser: u}.String())
	}
	return out
}

// checkPlan verifies a plan against its input with code independent of the
// planner: sizes, counts, names, and who can reach what.
func checkPlan(t *testing.T, in PlanInput, plan *Plan) {
	t.Helper()
	q, tg := in.Quotas, in.Target
	listed := map[string]string{}
	for _, pp := range plan.Principals {
		isBase := pp.Name == tg.Name && pp.Kind == tg.Kind && !pp.Shard
		inlineLimit, managedLimit := q.RolePolicySize, q.AttachedPoliciesPerRole
		if isBase {
			inlineLimit, managedLimit = q.inlineSize(tg.Kind)-tg.ReservedInline, q.attached(tg.Kind)-tg.ReservedManaged
		} else if pp.Kind != PrincipalRole || !pp.Shard {
			t.Fatalf("principal %s is neither the base nor a shard role", pp.Name)
		}
		if len(pp.Name) > q.RoleNameLength {
			t.Errorf("role name %s is longer than %d", pp.Name, q.RoleNameLength)
		}
		inline := 0
		for _, pol := range pp.InlinePolicies {
			inline += independentSize(t, pol.Document)
		}
		if inline > inlineLimit {
			t.Errorf("%s: inline policies use %d characters, limit %d", pp.Name, inline, inlineLimit)
		}
		if len(pp.ManagedPolicies) > managedLimit {
			t.Errorf("%s: %d managed policies, limit %d", pp.Name, len(pp.ManagedPolicies), managedLimit)
		}
		for _, pol := range pp.ManagedPolicies {
			if n := independentSize(t, pol.Document); n > q.PolicySize {
				t.Errorf("%s/%s: %d characters, limit %d", pp.Name, pol.Name, n, q.PolicySize)
			}
			if len(pol.Name) > q.PolicyNameLength {
				t.Errorf("policy name %s too long", pol.Name)
			}
		}
		for _, pol := range slices.Concat(pp.InlinePolicies, pp.ManagedPolicies) {
			if pol.Size != independentSize(t, pol.Document) {
				t.Errorf("%s/%s: reported size %d, counted %d", pp.Name, pol.Name, pol.Size, independentSize(t, pol.Document))
			}
		}
		if pp.TrustPolicy != nil && independentSize(t, pp.TrustPolicy) > q.AssumeRolePolicySize {
			t.Errorf("%s: trust policy too large", pp.Name)
		}
		if !sort.StringsAreSorted(pp.Databases) {
			t.Errorf("%s: databases not sorted", pp.Name)
		}
		for _, n := range pp.Databases {
			if other, dup := listed[n]; dup {
				t.Errorf("database %s listed on %s and %s", n, other, pp.Name)
			}
			listed[n] = pp.ARN
		}
	}
	// Every database is reachable from the base through exactly the
	// principal the plan lists it under, and through no other.
	state := plan.State()
	ctx := map[string]string{"sts:ExternalId": tg.ExternalID}
	reach := state.Reachable(plan.Base.ARN, 1, ctx)
	if len(reach) != len(plan.Principals) {
		t.Errorf("the base reaches %d principals, the plan has %d", len(reach), len(plan.Principals))
	}
	for _, db := range in.Inventory.Databases {
		holder, ok := listed[db.Name]
		if !ok {
			t.Errorf("database %s is on no principal", db.Name)
			continue
		}
		for _, arn := range dbARNs(db, plan.Partition) {
			via := state.ConnectVia(plan.Base.ARN, arn, 1, ctx)
			// Two names of one resource share a grant: the holder of either
			// grants both, so the check is on resources, not names.
			if !slices.Contains(via, holder) {
				t.Errorf("database %s (%s) is not reachable through %s; reachable via %v", db.Name, arn, holder, via)
			}
			if len(via) != 1 {
				t.Errorf("database %s (%s) is reachable through %d principals: %v", db.Name, arn, len(via), via)
			}
		}
	}
	if len(listed) != len(in.Inventory.Databases) {
		t.Errorf("plan lists %d databases, inventory has %d", len(listed), len(in.Inventory.Databases))
	}
	// The index agrees with the principals.
	if len(plan.Databases) != len(in.Inventory.Databases) {
		t.Errorf("index has %d databases, inventory %d", len(plan.Databases), len(in.Inventory.Databases))
	}
	for _, d := range plan.Databases {
		pp := plan.PrincipalFor(d.Name)
		if pp == nil || pp.ARN != listed[d.Name] {
			t.Errorf("index puts %s on %s, principals on %s", d.Name, d.Principal, listed[d.Name])
		}
	}
}

func mustPlan(t testing.TB, in PlanInput) *Plan {
	t.Helper()
	plan, err := NewPlan(in)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	return plan
}

func planJSON(t testing.TB, p *Plan) []byte {
	t.Helper()
	b, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip writes a plan and reads it back, as the CLI's --previous does.
func roundTrip(t testing.TB, p *Plan) *Plan {
	t.Helper()
	back, err := ReadPlan(planJSON(t, p), "plan.json")
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func TestPlanProperties(t *testing.T) {
	t.Parallel()
	fits := 0
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		g := &invGen{r: r}
		in := randomInput(r)
		in.Inventory = g.inventory(r.IntN(150))
		plan, err := NewPlan(in)
		if err != nil {
			var nf *NoFitError
			if !errors.As(err, &nf) {
				t.Fatalf("seed %d: unexpected error %v", seed, err)
			}
			continue
		}
		fits++
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkPlan(t, in, plan)
			// Toy quotas leave room for a few grants per document, so the
			// fluid lower bound is loose here; TestPlanNearLowerBound holds
			// real quotas to one document.
			if plan.Stats.Documents > 2*plan.Stats.LowerBound+1 {
				t.Errorf("%d documents, lower bound %d", plan.Stats.Documents, plan.Stats.LowerBound)
			}
			// Deterministic: the same input in another order gives the same bytes.
			shuffled := *in.Inventory
			shuffled.Databases = slices.Clone(shuffled.Databases)
			r.Shuffle(len(shuffled.Databases), func(i, j int) {
				shuffled.Databases[i], shuffled.Databases[j] = shuffled.Databases[j], shuffled.Databases[i]
			})
			in2 := in
			in2.Inventory = &shuffled
			if !bytes.Equal(planJSON(t, plan), planJSON(t, mustPlan(t, in2))) {
				t.Fatal("plan differs for the same inventory in another order")
			}
			// Incremental and idempotent: planning again on top of itself changes nothing.
			in3 := in
			in3.Previous = roundTrip(t, plan)
			same := mustPlan(t, in3)
			if len(same.Steps) != 0 || same.Stats.Moved != 0 || same.Stats.Written != 0 {
				t.Fatalf("replanning made %d steps, moved %d: %+v", len(same.Steps), same.Stats.Moved, same.Steps)
			}
			if !bytes.Equal(mustJSON(t, same.Principals), mustJSON(t, plan.Principals)) {
				t.Fatal("replanning changed the principals")
			}
			// A changed fleet: valid, no gap while applying, and only what must move moves.
			next := in
			next.Inventory = g.mutate(in.Inventory)
			next.Previous = roundTrip(t, plan)
			plan2, err := NewPlan(next)
			if err != nil {
				var nf *NoFitError
				if !errors.As(err, &nf) {
					t.Fatal(err)
				}
				return
			}
			checkPlan(t, next, plan2)
			fresh := next
			fresh.Previous = nil
			if f, err := NewPlan(fresh); err == nil && plan2.Stats.Documents > f.Stats.Documents+2 {
				t.Errorf("incremental plan: %d documents, a fresh plan %d", plan2.Stats.Documents, f.Stats.Documents)
			}
			simulateApply(t, plan, plan2, in.Inventory, next.Inventory, in.Target.ExternalID)
		})
	}
	if fits < 100 {
		t.Fatalf("only %d of 300 random inputs had a plan; the generator is too tight to test much", fits)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simulateApply applies next.Steps to the IAM state of prev one at a time and
// checks after every write, with the independent model, that every database
// both plans serve, for every user both allow, is still reachable from the
// base principal.
func simulateApply(t *testing.T, prev, next *Plan, _, _ *Inventory, externalID string) {
	t.Helper()
	if err := replay(prev, next, next.Steps, externalID); err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPlanNearLowerBound(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 99))
		g := &invGen{r: r}
		n := 50 + r.IntN(5000)
		q := DefaultQuotas()
		q.AttachedPoliciesPerRole = 10 + r.IntN(11)
		in := PlanInput{Inventory: g.inventory(n), Quotas: q, Target: Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: DefaultMaxShardRoles, ReservedInline: r.IntN(3000)}}
		plan := mustPlan(t, in)
		if plan.Stats.Documents > plan.Stats.LowerBound+1 {
			t.Errorf("seed %d, %d databases: %d documents, lower bound %d", seed, n, plan.Stats.Documents, plan.Stats.LowerBound)
		}
	}
}

// TestCapacity checks the quota arithmetic of the issue: us-east-1 instance
// resources with /* users, a 12-digit account, exact ARNs only.
func TestCapacity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		kind    PrincipalKind
		managed int
		atLeast int
	}{
		{"role with 10 managed policies", PrincipalRole, 10, 880},
		{"role with 20 managed policies", PrincipalRole, 20, 1640},
		{"user with 10 managed policies", PrincipalUser, 10, 750},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := DefaultQuotas()
			q.AttachedPoliciesPerRole, q.AttachedPoliciesPerUser = tt.managed, tt.managed
			fits := func(n int) bool {
				_, err := NewPlan(PlanInput{Inventory: uniformInventory(n), Quotas: q, Target: Target{Kind: tt.kind, Name: "proxy"}})
				return err == nil
			}
			most := sort.Search(3000, func(n int) bool { return !fits(n) }) - 1
			t.Logf("%s holds %d databases", tt.name, most)
			if most < tt.atLeast {
				t.Fatalf("holds %d databases, want at least %d", most, tt.atLeast)
			}
			in := PlanInput{Inventory: uniformInventory(most), Quotas: q, Target: Target{Kind: tt.kind, Name: "proxy"}}
			plan := mustPlan(t, in)
			checkPlan(t, in, plan)
			for _, s := range plan.Principals[0].ManagedPolicies {
				for _, st := range s.Document.Statements {
					for _, r := range st.Resource.List {
						if strings.Count(r, "*") != 1 || !strings.HasSuffix(r, "/*") {
							t.Fatalf("resource %s widens access beyond one database", r)
						}
					}
				}
			}
			_, err := NewPlan(PlanInput{Inventory: uniformInventory(most + 1), Quotas: q, Target: Target{Kind: tt.kind, Name: "proxy"}})
			var nf *NoFitError
			if !errors.As(err, &nf) || !strings.Contains(err.Error(), "--max-shard-roles") {
				t.Fatalf("one more database: %v, want a NoFitError that suggests shard roles", err)
			}
		})
	}
	t.Run("any number across chained roles", func(t *testing.T) {
		t.Parallel()
		in := PlanInput{Inventory: uniformInventory(5000), Quotas: DefaultQuotas(), Target: Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: DefaultMaxShardRoles}}
		plan := mustPlan(t, in)
		checkPlan(t, in, plan)
		if plan.Stats.Documents > plan.Stats.LowerBound+1 || len(plan.Principals) < 6 {
			t.Fatalf("5000 databases: %+v", plan.Stats)
		}
	})
}

// TestIncrementalChurn checks that one change to a large fleet rewrites O(1)
// documents.
func TestIncrementalChurn(t *testing.T) {
	t.Parallel()
	g := &invGen{r: rand.New(rand.NewPCG(1, 2))}
	inv := g.inventory(10000)
	target := Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: DefaultMaxShardRoles}
	base := mustPlan(t, PlanInput{Inventory: inv, Quotas: DefaultQuotas(), Target: target})
	prev := roundTrip(t, base)
	if base.Stats.Documents > base.Stats.LowerBound+1 {
		t.Fatalf("fresh plan: %d documents, lower bound %d", base.Stats.Documents, base.Stats.LowerBound)
	}
	for i := range 20 {
		added := &Inventory{Databases: append(slices.Clone(inv.Databases), g.database())}
		plan := mustPlan(t, PlanInput{Inventory: added, Quotas: DefaultQuotas(), Target: target, Previous: prev})
		if plan.Stats.Written > 2 || plan.Stats.Moved != 0 || plan.Stats.Added != 1 {
			t.Fatalf("adding one database: %+v\n%+v", plan.Stats, plan.Steps)
		}
		removed := &Inventory{Databases: slices.Delete(slices.Clone(inv.Databases), i*97, i*97+1)}
		plan = mustPlan(t, PlanInput{Inventory: removed, Quotas: DefaultQuotas(), Target: target, Previous: prev})
		if plan.Stats.Written != 1 || plan.Stats.Moved != 0 || plan.Stats.Removed != 1 {
			t.Fatalf("removing one database: %+v\n%+v", plan.Stats, plan.Steps)
		}
	}
	// Removing a tenth of the fleet leaves holes; adding back fills them
	// without touching the rest, and compaction keeps the plan near the bound.
	var shrunk Inventory
	for i, db := range inv.Databases {
		if i%10 != 3 {
			shrunk.Databases = append(shrunk.Databases, db)
		}
	}
	plan := mustPlan(t, PlanInput{Inventory: &shrunk, Quotas: DefaultQuotas(), Target: target, Previous: prev})
	if plan.Stats.Documents > plan.Stats.LowerBound+2 {
		t.Fatalf("after removing 10%%: %+v", plan.Stats)
	}
	t.Logf("removing 10%%: %+v", plan.Stats)
}

func TestPlanSteps(t *testing.T) {
	t.Parallel()
	q := DefaultQuotas()
	q.AttachedPoliciesPerRole = 1
	target := Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: 10}
	first := mustPlan(t, PlanInput{Inventory: uniformInventory(300), Quotas: q, Target: target})
	if got := first.Steps[0]; got.Action != ActionCreateRole || got.Principal != "proxy-shard-001" {
		t.Fatalf("first step %+v, want the shard role created first", got)
	}
	for _, st := range first.Steps {
		if st.Phase == PhaseRevoke || st.Phase == PhaseCleanup {
			t.Fatalf("a fresh plan revokes: %+v", st)
		}
	}
	// Lowering the managed quota retires documents; their databases move and
	// are granted before the old documents go away.
	q2 := q
	q2.AttachedPoliciesPerRole = 0
	second := mustPlan(t, PlanInput{Inventory: uniformInventory(300), Quotas: q2, Target: target, Previous: roundTrip(t, first)})
	if second.Stats.Moved == 0 {
		t.Fatalf("nothing moved: %+v", second.Stats)
	}
	seenRevoke := false
	granted := map[string]int{}
	for i, st := range second.Steps {
		switch st.Phase {
		case PhaseGrant:
			if seenRevoke {
				t.Fatalf("grant after revoke at step %d: %+v", i, second.Steps)
			}
			for _, d := range st.Adds {
				granted[d] = i
			}
		case PhaseRevoke:
			seenRevoke = true
			for _, d := range st.Removes {
				if _, ok := granted[d]; !ok && second.PrincipalFor(d) != nil {
					t.Fatalf("step %d revokes %s before any step grants it", i, d)
				}
			}
		}
	}
	simulateApply(t, first, second, uniformInventory(300), uniformInventory(300), "")
	// Shrinking the fleet deletes the shard role last.
	third := mustPlan(t, PlanInput{Inventory: uniformInventory(10), Quotas: q2, Target: target, Previous: roundTrip(t, second)})
	last := third.Steps[len(third.Steps)-1]
	if last.Action != ActionDeleteRole {
		t.Fatalf("last step %+v, want delete_role", last)
	}
	simulateApply(t, second, third, uniformInventory(300), uniformInventory(10), "")
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	inv := uniformInventory(3)
	tests := []struct {
		name   string
		change func(in *PlanInput)
		want   string
	}{
		{"no name", func(in *PlanInput) { in.Target.Name = "" }, "role name is empty"},
		{"bad kind", func(in *PlanInput) { in.Target.Kind = "group" }, `principal kind "group"`},
		{"long prefix", func(in *PlanInput) { in.Target.MaxShardRoles, in.Target.ShardRolePrefix = 2, strings.Repeat("x", 62) }, "choose a shorter shard role prefix"},
		{"reserved too much", func(in *PlanInput) { in.Target.ReservedInline = 20000 }, "reserved inline characters must be between 0 and the role inline quota 10240"},
		{"too many managed", func(in *PlanInput) { in.Quotas.AttachedPoliciesPerRole = 30 }, "between 0 and 25"},
		{"mixed accounts", func(in *PlanInput) {
			in.Inventory = uniformInventory(3)
			in.Inventory.Databases[1].AccountID = "210987654321"
		}, "plan each account separately"},
		{"mixed partitions", func(in *PlanInput) {
			in.Inventory = uniformInventory(3)
			in.Inventory.Databases[2].Region = "cn-north-1"
		}, "plan each partition separately"},
		{"empty inventory needs account", func(in *PlanInput) { in.Inventory = &Inventory{} }, "account id"},
		{"user cannot fit", func(in *PlanInput) {
			in.Inventory, in.Target.Kind, in.Target.Name = uniformInventory(2000), PrincipalUser, "alice"
		}, "allow shard roles that the user assumes"},
		{"database with too many users", func(in *PlanInput) {
			in.Inventory = uniformInventory(1)
			for i := range 200 {
				in.Inventory.Databases[0].DBUsers = append(in.Inventory.Databases[0].DBUsers, fmt.Sprintf("user%03d", i))
			}
			in.Inventory.Databases[0].DBUsers = in.Inventory.Databases[0].DBUsers[1:]
		}, "more than the largest policy document holds"},
		{"newer previous plan", func(in *PlanInput) { in.Previous = &Plan{FormatVersion: 99} }, "upgrade rdsgate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := PlanInput{Inventory: inv, Quotas: DefaultQuotas(), Target: Target{Kind: PrincipalRole, Name: "proxy"}}
			tt.change(&in)
			_, err := NewPlan(in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestReadPlanErrors(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"principals":[]}`:    "no format_version",
		`{"format_version":2}`: "newer than this rdsgate understands",
		`{"format_version":1,`: "invalid JSON",
		`{"format_version":1,"principals":[{"inline_policies":[{"document":{"Statement":3}}]}]}`: "Statement",
	} {
		if _, err := ReadPlan([]byte(in), "p.json"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadPlan(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestSharedResourceIsWrittenOnce(t *testing.T) {
	t.Parallel()
	inv := uniformInventory(2)
	inv.Databases[1].ResourceID = inv.Databases[0].ResourceID
	inv.Databases[1].DBUsers = []string{"*"}
	in := PlanInput{Inventory: inv, Quotas: DefaultQuotas(), Target: Target{Kind: PrincipalRole, Name: "proxy"}}
	plan := mustPlan(t, in)
	checkPlan(t, in, plan)
	doc := plan.Principals[0].InlinePolicies[0]
	if n := len(doc.Document.Statements[0].Resource.List); n != 1 || len(doc.Databases) != 2 {
		t.Fatalf("want one ARN for two names, got %d ARNs for %v", n, doc.Databases)
	}
}

// FuzzPlan: random fleets and quotas from the fuzzer's numbers, planned and
// then planned again over a changed fleet. Every plan passes checkPlan (sizes
// counted through encoding/json, names, counts, reach); the independent
// model (test/iamcheck) finds every database user reachable from the base
// and every quota kept; and the steps between the two plans never leave a
// gap, replayed write by write through the same model.
func FuzzPlan(f *testing.F) {
	f.Add(uint64(1), uint8(20), true)
	f.Add(uint64(7), uint8(150), false)
	f.Add(uint64(42), uint8(0), true)
	f.Add(uint64(1<<40+3), uint8(90), true)
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, change bool) {
		r := rand.New(rand.NewPCG(seed, uint64(n)))
		g := &invGen{r: r}
		in := randomInput(r)
		in.Inventory = g.inventory(int(n))
		// A fleet that cannot fit is refused with a NoFitError, and that
		// is all there is to check of it.
		fits := func(err error) bool {
			if nf := (*NoFitError)(nil); err != nil && !errors.As(err, &nf) {
				t.Fatalf("not a NoFitError: %v", err)
			}
			return err == nil
		}
		plan, err := NewPlan(in)
		if !fits(err) {
			return
		}
		checkPlan(t, in, plan)
		independentCoverage(t, in, plan)
		if !change {
			return
		}
		next := in
		next.Inventory = g.mutate(in.Inventory)
		next.Previous = roundTrip(t, plan)
		plan2, err := NewPlan(next)
		if !fits(err) {
			return
		}
		checkPlan(t, next, plan2)
		independentCoverage(t, next, plan2)
		simulateApply(t, plan, plan2, in.Inventory, next.Inventory, in.Target.ExternalID)
	})
}

// independentCoverage asks test/iamcheck, not rdsgate's evaluator, whether
// the IAM a plan describes lets the base reach every database user of the
// inventory, and keeps every quota.
func independentCoverage(t *testing.T, in PlanInput, plan *Plan) {
	t.Helper()
	w := worldWith(plan, in.Target.ExternalID, plan.Settings)
	if err := w.CheckQuotas(); err != nil {
		t.Errorf("iamcheck: %v", err)
	}
	var want []string
	for _, db := range in.Inventory.Databases {
		for _, arn := range dbARNs(db, plan.Partition) {
			if !strings.Contains(arn, "*") {
				want = append(want, arn)
			}
		}
	}
	if missing := w.Missing(want); len(missing) > 0 {
		t.Errorf("iamcheck: the base cannot reach %d of %d database users, such as %s", len(missing), len(want), missing[0])
	}
}
