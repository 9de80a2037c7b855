package policies

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Run with: go test ./policies -run '^$' -bench Plan -benchmem -cpu 1
// Each benchmark reports the documents used beside the lower bound, and the
// incremental ones how many documents a change rewrites.

var benchSizes = []int{1000, 10000, 100000}

func benchInput(n int) PlanInput {
	g := &invGen{r: rand.New(rand.NewPCG(uint64(n), 1))}
	return PlanInput{
		Inventory: g.inventory(n),
		Quotas:    DefaultQuotas(),
		Target:    Target{Kind: PrincipalRole, Name: "proxy", MaxShardRoles: 5000},
	}
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range benchSizes {
		in := benchInput(n)
		b.Run(fmt.Sprintf("databases=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var plan *Plan
			for b.Loop() {
				plan = mustPlan(b, in)
			}
			b.ReportMetric(float64(plan.Stats.Documents), "documents")
			b.ReportMetric(float64(plan.Stats.LowerBound), "lower-bound")
		})
	}
}

func BenchmarkPlanJSON(b *testing.B) {
	for _, n := range benchSizes {
		plan := mustPlan(b, benchInput(n))
		b.Run(fmt.Sprintf("databases=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := plan.JSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlanIncremental(b *testing.B) {
	for _, n := range benchSizes {
		in := benchInput(n)
		prev := roundTrip(b, mustPlan(b, in))
		g := &invGen{r: rand.New(rand.NewPCG(7, 7)), next: 10 * n}
		added := &Inventory{Databases: append(slices.Clone(in.Inventory.Databases), g.database())}
		removed := &Inventory{Databases: slices.Delete(slices.Clone(in.Inventory.Databases), n/2, n/2+1)}
		for _, c := range []struct {
			name string
			inv  *Inventory
		}{{"add-one", added}, {"remove-one", removed}} {
			b.Run(fmt.Sprintf("%s/databases=%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				next := in
				next.Inventory, next.Previous = c.inv, prev
				var plan *Plan
				for b.Loop() {
					plan = mustPlan(b, next)
				}
				b.ReportMetric(float64(plan.Stats.Written), "documents-written")
				b.ReportMetric(float64(plan.Stats.Moved), "moved")
			})
		}
	}
}
