package policies

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Packing: grants without a document are placed into the holes of existing
// documents and then into new ones (place, fillEmpty with a knapsack per
// document), the number of documents is bounded from below (lowerBound),
// and documents that can be emptied into others are drained (compact).

// place puts every grant without a document somewhere: first into the holes
// of documents that already exist (largest grants first), then into new
// documents filled in layout order. It never adds to a document that is
// giving grants away.
func (p *planner) place() error {
	var pending []int
	for gi := range p.grants {
		if p.grants[gi].bin < 0 {
			pending = append(pending, gi)
		}
	}
	sort.Slice(pending, func(i, j int) bool {
		gi, gj := &p.grants[pending[i]], &p.grants[pending[j]]
		if gi.cost != gj.cost {
			return gi.cost > gj.cost
		}
		return gi.key < gj.key
	})
	rest := pending[:0]
	for _, gi := range pending {
		if id := p.tree.first(p.grants[gi].cost); id >= 0 {
			p.assign(gi, id)
			p.bins[id].sink = true
		} else {
			rest = append(rest, gi)
		}
	}
	return p.fillEmpty(rest)
}

// costClass is every pending grant of one cost, in ARN order.
type costClass struct {
	cost   int
	grants []int
}

// fillEmpty fills empty documents in layout order. Each is filled greedily
// with the largest grants, then its last stretch is solved exactly: the
// smallest grants taken are put back and a bounded knapsack over the grant
// sizes picks the combination that comes closest to the quota. Documents end
// nearly full, so the plan stays within a document of the lower bound even at
// 100k databases.
func (p *planner) fillEmpty(pending []int) error {
	if len(pending) == 0 {
		return nil
	}
	var classes []costClass
	for _, gi := range pending {
		c := p.grants[gi].cost
		if n := len(classes); n > 0 && classes[n-1].cost == c {
			classes[n-1].grants = append(classes[n-1].grants, gi)
		} else {
			classes = append(classes, costClass{cost: c, grants: []int{gi}})
		}
	}
	for i := range classes {
		sort.Ints(classes[i].grants)
	}
	left := len(pending)
	var ks knapsack
	for id := range p.bins {
		if left == 0 {
			break
		}
		b := &p.bins[id]
		if b.source || len(b.grants) > 0 || b.capacity == 0 {
			continue
		}
		for ci, k := range ks.fill(classes, b.capacity) {
			for range k {
				p.assign(classes[ci].grants[0], id)
				classes[ci].grants = classes[ci].grants[1:]
				left--
			}
		}
		if len(b.grants) > 0 {
			b.sink = true
		}
	}
	for _, c := range classes {
		if len(c.grants) > 0 {
			return p.noFit(c.grants[0])
		}
	}
	return nil
}

// knapsack keeps its buffers between documents.
type knapsack struct {
	take, from, used []int
}

// tailWindow is how many characters at the end of a document are chosen
// exactly rather than greedily.
const tailWindow = 1024

// fill returns how many grants of each class go into a document of the given
// capacity.
func (k *knapsack) fill(classes []costClass, capacity int) []int {
	k.take = resize(k.take, len(classes))
	r := capacity
	largest := 0
	for i, c := range classes {
		avail := len(c.grants)
		if avail == 0 {
			continue
		}
		largest = max(largest, c.cost)
		if c.cost <= r {
			n := min(avail, r/c.cost)
			k.take[i] = n
			r -= n * c.cost
		}
	}
	if r == 0 {
		return k.take
	}
	window := max(tailWindow, 2*largest)
	freed := 0
	for i := len(classes) - 1; i >= 0 && freed < window; i-- {
		for k.take[i] > 0 && freed < window {
			k.take[i]--
			freed += classes[i].cost
		}
	}
	s := min(r+freed, capacity)
	k.from = resize(k.from, s+1)
	k.used = resize(k.used, s+1)
	for i := range k.from {
		k.from[i] = -1
	}
	k.from[0] = len(classes)
	for i, c := range classes {
		avail := len(c.grants) - k.take[i]
		if avail <= 0 || c.cost > s {
			continue
		}
		clear(k.used)
		for x := c.cost; x <= s; x++ {
			if k.from[x] == -1 && k.from[x-c.cost] != -1 && k.used[x-c.cost] < avail {
				k.from[x] = i
				k.used[x] = k.used[x-c.cost] + 1
			}
		}
	}
	best := s
	for k.from[best] == -1 {
		best--
	}
	for best > 0 {
		i := k.from[best]
		k.take[i]++
		best -= classes[i].cost
	}
	return k.take
}

func resize(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	s = s[:n]
	clear(s)
	return s
}

func (p *planner) noFit(gi int) error {
	g := &p.grants[gi]
	largest := 0
	for _, b := range p.bins {
		largest = max(largest, b.capacity)
	}
	largest = max(largest, p.q.RolePolicySize)
	if g.cost > largest {
		return &NoFitError{Msg: fmt.Sprintf("database %s needs %d characters of policy for its %d db_users, more than the largest policy document holds; allow fewer db_users on it, or \"*\"", quoteList(g.names), g.cost, len(g.arns))}
	}
	total := 0
	for _, gr := range p.grants {
		total += gr.cost
	}
	capacity := 0
	for _, b := range p.bins {
		capacity += b.capacity
	}
	t := p.t
	var b strings.Builder
	fmt.Fprintf(&b, "cannot fit %s: their permissions need %d characters of policy, and the %s %q", Count(len(p.in.Inventory.Databases), "database"), total, t.Kind, t.Name)
	if t.MaxShardRoles > 0 {
		fmt.Fprintf(&b, " with %d shard roles", t.MaxShardRoles)
	}
	fmt.Fprintf(&b, " can hold about %d (inline %d, %d managed policies of %d each", capacity, p.q.inlineSize(t.Kind)-t.ReservedInline, p.baseSlots-1, p.q.PolicySize)
	if t.MaxShardRoles > 0 {
		fmt.Fprintf(&b, ", and per shard role inline %d and %d managed", p.q.RolePolicySize, p.shardSlots-1)
	}
	b.WriteString("). To fix:")
	if t.MaxShardRoles == 0 {
		fmt.Fprintf(&b, " allow shard roles that the %s assumes (--max-shard-roles);", t.Kind)
	} else {
		b.WriteString(" allow more shard roles (--max-shard-roles, raising the account's role quota if needed);")
	}
	fmt.Fprintf(&b, " raise the managed policy attachment quota (--max-managed, up to 20 after an AWS quota increase);")
	if t.ReservedInline > 0 || t.ReservedManaged > 0 {
		b.WriteString(" free the inline or managed space other policies use (--reserved-inline, --reserved-managed);")
	}
	b.WriteString(" or split the inventory.")
	return &NoFitError{Msg: b.String()}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func (p *planner) usedBins() int {
	n := 0
	for _, b := range p.bins {
		if len(b.grants) > 0 {
			n++
		}
	}
	return n
}

// lowerBound is the fewest documents that could hold every grant when
// principals are filled in order: the larger of the character bound (fluid
// grants) and the count bound (each document holds at most as many grants as
// its smallest ones fit).
func (p *planner) lowerBound() int {
	if len(p.grants) == 0 {
		return 0
	}
	costs := make([]int, len(p.grants))
	total := 0
	for i, g := range p.grants {
		costs[i] = g.cost
		total += g.cost
	}
	sort.Ints(costs)
	prefix := make([]int, len(costs)+1)
	for i, c := range costs {
		prefix[i+1] = prefix[i] + c
	}
	byChars, byCount := -1, -1
	sumCap, sumCount, docs := 0, 0, 0
	for _, b := range p.bins {
		if b.capacity < costs[0] {
			continue
		}
		docs++
		sumCap += b.capacity
		// The most grants this document can hold are the smallest ones.
		sumCount += sort.Search(len(prefix), func(k int) bool { return prefix[k] > b.capacity }) - 1
		if byChars < 0 && sumCap >= total {
			byChars = docs
		}
		if byCount < 0 && sumCount >= len(costs) {
			byCount = docs
		}
		if byChars >= 0 && byCount >= 0 {
			break
		}
	}
	return max(byChars, byCount)
}

// compact empties the least-filled documents into others while the plan uses
// more than target documents; each drain moves one document's worth of
// databases, or none when they do not fit elsewhere.
func (p *planner) compact(target int) {
	tried := map[int]bool{}
	for p.usedBins() > target {
		victim := -1
		for id := range p.bins {
			b := &p.bins[id]
			if len(b.grants) == 0 || b.sink || b.source || tried[id] {
				continue
			}
			// The emptiest document moves the fewest databases; on a tie the
			// later one, so trailing shard roles empty out first.
			if victim < 0 || b.used <= p.bins[victim].used {
				victim = id
			}
		}
		if victim < 0 {
			return
		}
		tried[victim] = true
		p.drain(victim)
	}
}

// drain moves every grant of one document elsewhere, or nothing at all.
func (p *planner) drain(id int) bool {
	b := &p.bins[id]
	b.source = true
	p.refresh(id)
	moving := slices.Clone(b.grants)
	sort.Slice(moving, func(i, j int) bool {
		gi, gj := &p.grants[moving[i]], &p.grants[moving[j]]
		if gi.cost != gj.cost {
			return gi.cost > gj.cost
		}
		return gi.key < gj.key
	})
	type move struct{ gi, to int }
	var done []move
	wasSink := map[int]bool{}
	for _, gi := range moving {
		to := p.tree.first(p.grants[gi].cost)
		if to < 0 {
			for _, m := range done {
				t := &p.bins[m.to]
				t.used -= p.grants[m.gi].cost
				t.grants = t.grants[:len(t.grants)-1]
				t.sink = wasSink[m.to]
				p.refresh(m.to)
				p.grants[m.gi].bin = id
			}
			b.source = false
			p.refresh(id)
			return false
		}
		if _, seen := wasSink[to]; !seen {
			wasSink[to] = p.bins[to].sink
		}
		t := &p.bins[to]
		t.grants = append(t.grants, gi)
		t.used += p.grants[gi].cost
		t.sink = true
		p.refresh(to)
		p.grants[gi].bin = to
		done = append(done, move{gi, to})
	}
	b.grants = nil
	b.used = 0
	return true
}
