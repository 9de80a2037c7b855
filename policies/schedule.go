package policies

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Names of the temporary documents a schedule may create to break a cycle of
// moves. They are rdsgate's (ReadState recognises them, so an apply that
// stops halfway finds and removes them) and never part of a plan.
const (
	parkInlinePrefix  = InlinePolicyName + "-park-"
	parkManagedSuffix = "-connect-park-"
)

// ParkInlineName is the name of the n-th temporary inline document.
func ParkInlineName(n int) string { return fmt.Sprintf("%s%02d", parkInlinePrefix, n) }

// ParkManagedName is the name of the n-th temporary managed policy of a principal.
func ParkManagedName(principal string, n int) string {
	return fmt.Sprintf("%s%s%02d", principal, parkManagedSuffix, n)
}

// IsParkInline reports whether an inline policy name is a temporary document.
func IsParkInline(name string) bool { return strings.HasPrefix(name, parkInlinePrefix) }

// IsParkManaged reports whether a managed policy name is a temporary
// document of the principal.
func IsParkManaged(principal, name string) bool {
	return strings.HasPrefix(name, principal+parkManagedSuffix)
}

// OtherPolicies is what a principal holds outside rdsgate's documents: it
// shares the principal's quotas, and may let the base principal assume its
// shard roles.
type OtherPolicies struct {
	// InlineSize is the size of its other inline policies together.
	InlineSize int
	// Attached counts its other attached managed policies.
	Attached int
	// Documents are those policies, when known.
	Documents []*Document
}

// ScheduleInput is what Schedule orders writes from.
type ScheduleInput struct {
	// Current is what IAM holds, in a plan's shape (bootstrap.ReadState), or
	// the plan in effect; nil when nothing is held.
	Current *Plan
	// Desired is the plan to make true.
	Desired *Plan
	// Other is, per principal name, what it holds outside rdsgate. When the
	// base principal is missing, the plan's reservations stand in for it.
	Other map[string]OtherPolicies
	// Quotas are the account's (iam:GetAccountSummary); nil means the ones
	// the desired plan was made for. Intermediate states may use more than
	// the plan does, up to what the account allows.
	Quotas *Quotas
}

// WriteSchedule is an order of writes that never leaves a gap, and what it
// costs beyond the plain difference.
type WriteSchedule struct {
	Steps []Step
	// Interim counts writes of a document with content that is not its
	// final one (old and new together), later rewritten.
	Interim int
	// Temporary counts temporary documents created (and removed again).
	Temporary int
	// MostTemporary is the most temporary documents that existed at once.
	MostTemporary int
}

// GapError says that no order of writes within the quotas keeps every
// database reachable, and what would make one possible. Nothing was written.
type GapError struct{ Msg string }

func (e *GapError) Error() string { return e.Msg }

// content is what an rdsgate document grants, as sorted patterns.
type content struct {
	arns   []string // rds-db:connect resources
	assume []string // sts:AssumeRole resources
}

func contentOf(d *Document) content {
	var c content
	if d == nil {
		return c
	}
	for _, st := range d.Statements {
		if st.Effect != Allow || !st.Resource.Present() {
			continue
		}
		for _, a := range st.Action.List {
			switch strings.ToLower(a) {
			case connectAction:
				c.arns = append(c.arns, st.Resource.List...)
			case strings.ToLower(assumeAction):
				c.assume = append(c.assume, st.Resource.List...)
			}
		}
	}
	c.arns = sortStrings(c.arns)
	c.assume = sortStrings(c.assume)
	return c
}

// document renders a content the way the planner renders its documents.
func (c content) document() *Document {
	d := &Document{Version: PolicyVersion}
	if len(c.assume) > 0 {
		st := assumeStatement(c.assume[0])
		if len(c.assume) > 1 {
			st.Resource = List(slices.Clone(c.assume)...)
		}
		d.Statements = append(d.Statements, st)
	}
	if len(c.arns) > 0 {
		d.Statements = append(d.Statements, connectStatement(slices.Clone(c.arns)))
	}
	return d
}

// sched is the state of one scheduling: IAM as it will be after the
// steps so far, and how many documents hold each request both sides allow.
type sched struct {
	in       ScheduleInput
	desired  *Plan
	base     string
	extID    string
	prins    map[string]*sprin
	order    []string // principal names: desired order, then the rest
	docs     map[docKey]*sdoc
	need     []string       // requests allowed before and after
	needAt   map[string]int // request -> index
	byPrefix map[string][]int
	count    []int32
	names    map[string][]string // resource prefix -> database names
	out      *WriteSchedule
	temps    int
	// policySize is the quota of one managed policy.
	policySize int
}

type sprin struct {
	name, arn   string
	kind        PrincipalKind
	shard       bool
	exists      bool
	trustOK     bool
	inlineQuota int // for rdsgate's inline documents together
	maxManaged  int // rdsgate's attachments
	other       OtherPolicies
	wantRole    bool // a desired shard role
	target      *PlanPrincipal
	current     *PlanPrincipal
}

type sdoc struct {
	key    docKey
	prin   *sprin
	exists bool
	cur    content
	size   int
	cover  []int // indexes of need this document allows
	target *PlanPolicy
	tcont  content
	done   bool // holds its target (or is gone, when it has none)
	temp   bool // a temporary document this schedule or an earlier apply made
	parked bool // made by this schedule: removed once settled
}

// Schedule orders the writes that take IAM from in.Current to in.Desired so
// that every request allowed both before and after (an rds-db:connect for a
// database user, through the base principal or a shard role it can assume)
// stays allowed after every single write, and every intermediate state fits
// IAM's quotas. Documents that give databases to each other are broken up:
// first by writing one with old and new together where that fits, otherwise
// by parking the databases in a temporary document removed at the end. When
// no order fits the quotas it returns a GapError naming what is missing.
func Schedule(in ScheduleInput) (*WriteSchedule, error) {
	s, err := newSched(in)
	if err != nil {
		return nil, err
	}
	if err := s.run(); err != nil {
		return nil, err
	}
	if s.out.Steps == nil {
		s.out.Steps = []Step{}
	}
	return s.out, nil
}

func newSched(in ScheduleInput) (*sched, error) {
	d := in.Desired
	s := &sched{in: in, desired: d, base: d.Base.Name, extID: d.Settings.ExternalID, prins: map[string]*sprin{},
		docs: map[docKey]*sdoc{}, needAt: map[string]int{}, byPrefix: map[string][]int{}, names: map[string][]string{}, out: &WriteSchedule{}}
	set := d.Settings
	shardInline, shardManaged := set.ShardQuotas()
	baseInline, baseManaged := set.InlineSize, set.MaxManaged
	s.policySize = set.PolicySize
	if q := in.Quotas; q != nil {
		shardInline, shardManaged = q.RolePolicySize, q.AttachedPoliciesPerRole
		baseInline, baseManaged = q.inlineSize(d.Base.Kind), q.attached(d.Base.Kind)
		s.policySize = q.PolicySize
	}
	prin := func(pp *PlanPrincipal) *sprin {
		if p := s.prins[pp.Name]; p != nil {
			return p
		}
		p := &sprin{name: pp.Name, arn: pp.ARN, kind: pp.Kind, shard: pp.Name != s.base}
		if p.shard {
			p.inlineQuota, p.maxManaged = shardInline, shardManaged
		} else {
			p.inlineQuota, p.maxManaged = baseInline, baseManaged
			p.exists, p.trustOK = true, true
			p.arn = d.Base.ARN
		}
		if o, ok := in.Other[pp.Name]; ok {
			p.other = o
		} else if !p.shard {
			p.other = OtherPolicies{InlineSize: set.ReservedInline, Attached: set.ReservedManaged}
		}
		s.prins[pp.Name] = p
		s.order = append(s.order, pp.Name)
		return p
	}
	prin(&PlanPrincipal{Kind: d.Base.Kind, Name: d.Base.Name, ARN: d.Base.ARN})
	for i := range d.Principals {
		pp := &d.Principals[i]
		p := prin(pp)
		p.target = pp
		p.wantRole = pp.Shard
	}
	if in.Current != nil {
		for i := range in.Current.Principals {
			pp := &in.Current.Principals[i]
			p := prin(pp)
			p.current = pp
			if p.shard {
				p.exists = true
				p.trustOK = pp.TrustPolicy != nil && Evaluate([]*Document{pp.TrustPolicy},
					Request{Action: assumeAction, Principal: d.Base.ARN, Context: map[string]string{"sts:ExternalId": s.extID}}) == Allowed
			}
		}
	}
	for _, db := range d.Databases {
		k := strings.TrimSuffix(db.ResourcePrefix(d.Partition, d.AccountID), "/")
		s.names[k] = append(s.names[k], db.Name)
	}
	if in.Current != nil {
		for _, db := range in.Current.Databases {
			k := strings.TrimSuffix(db.ResourcePrefix(in.Current.Partition, in.Current.AccountID), "/")
			if !slices.Contains(s.names[k], db.Name) {
				s.names[k] = append(s.names[k], db.Name)
			}
		}
	}
	// Documents IAM holds, then the ones the plan wants.
	if in.Current != nil {
		for _, pd := range documentsOf(in.Current) {
			doc := &sdoc{key: pd.key, prin: s.prins[pd.key.principal], exists: true, cur: contentOf(pd.policy.Document), size: pd.policy.Document.Size()}
			doc.temp = pd.key.managed && IsParkManaged(pd.key.principal, pd.key.policy) || !pd.key.managed && IsParkInline(pd.key.policy)
			s.docs[pd.key] = doc
		}
	}
	for _, pd := range documentsOf(d) {
		doc := s.docs[pd.key]
		if doc == nil {
			doc = &sdoc{key: pd.key, prin: s.prins[pd.key.principal]}
			s.docs[pd.key] = doc
		}
		doc.target, doc.tcont = pd.policy, contentOf(pd.policy.Document)
		if doc.exists && in.Current != nil {
			if old := findPolicy(in.Current, pd.key); old != nil && Equivalent(old.Document, pd.policy.Document) {
				doc.done = true
			}
		}
	}
	s.computeNeed()
	for _, doc := range s.docs {
		doc.cover = s.coverOf(doc.cur)
	}
	s.count = make([]int32, len(s.need))
	s.recount()
	for _, doc := range s.docs {
		if doc.temp && doc.exists {
			s.temps++
		}
	}
	for i, c := range s.count {
		if c == 0 {
			return nil, fmt.Errorf("policies: internal error: request %s is needed but held by nothing", s.need[i])
		}
	}
	return s, nil
}

func findPolicy(p *Plan, k docKey) *PlanPolicy {
	for _, d := range documentsOf(p) {
		if d.key == k {
			return d.policy
		}
	}
	return nil
}

// computeNeed lists the requests allowed both before and after: for a
// pattern on each side that the other side's pattern covers, the narrower.
func (s *sched) computeNeed() {
	before := map[string]bool{}
	for _, doc := range s.docs {
		if doc.exists && s.reachable(doc.prin) {
			for _, a := range doc.cur.arns {
				before[a] = true
			}
		}
	}
	after := map[string]bool{}
	for _, doc := range s.docs {
		if doc.target != nil {
			for _, a := range doc.tcont.arns {
				after[a] = true
			}
		}
	}
	need := map[string]bool{}
	covered := func(pattern string, others map[string]bool) bool {
		if others[pattern] {
			return true
		}
		prefix, _ := splitUser(pattern)
		if others[prefix+"/*"] {
			return true
		}
		for o := range others {
			if strings.ContainsAny(o, "*?") && MatchWildcard(o, pattern) {
				return true
			}
		}
		return false
	}
	hasWild := func(m map[string]bool) bool {
		for a := range m {
			if strings.ContainsAny(a, "*?") {
				return true
			}
		}
		return false
	}
	wildBefore, wildAfter := hasWild(before), hasWild(after)
	for a := range before {
		if after[a] || (wildAfter && covered(a, after)) {
			need[a] = true
		}
	}
	for a := range after {
		if before[a] || (wildBefore && covered(a, before)) {
			need[a] = true
		}
	}
	s.need = sortStrings(keysOf(need))
	for i, a := range s.need {
		s.needAt[a] = i
		prefix, _ := splitUser(a)
		s.byPrefix[prefix] = append(s.byPrefix[prefix], i)
	}
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// splitUser splits an rds-db ARN pattern at its last slash.
func splitUser(arn string) (prefix, user string) {
	i := strings.LastIndexByte(arn, '/')
	if i < 0 {
		return arn, ""
	}
	return arn[:i], arn[i+1:]
}

// coverOf lists the needed requests a content allows.
func (s *sched) coverOf(c content) []int {
	var out []int
	for _, a := range c.arns {
		if i, ok := s.needAt[a]; ok {
			out = append(out, i)
		}
		prefix, user := splitUser(a)
		switch {
		case !strings.ContainsAny(a, "*?"):
		case user == "*" && !strings.ContainsAny(prefix, "*?"):
			out = append(out, s.byPrefix[prefix]...)
		default:
			for i, n := range s.need {
				if MatchWildcard(a, n) {
					out = append(out, i)
				}
			}
		}
	}
	sort.Ints(out)
	return slices.Compact(out)
}

// reachable reports whether the base principal reaches p now.
func (s *sched) reachable(p *sprin) bool {
	if !p.shard {
		return true
	}
	return p.exists && p.trustOK && s.baseMayAssume(p.arn, nil)
}

// baseMayAssume reports whether the base's identity policies allow
// sts:AssumeRole on a role: rdsgate's documents as they are now (or with
// one of them replaced by override) and the base's other policies.
func (s *sched) baseMayAssume(roleARN string, override *sdocOverride) bool {
	for _, doc := range s.docs {
		if doc.prin.shard {
			continue
		}
		c, exists := doc.cur, doc.exists
		if override != nil && override.key == doc.key {
			c, exists = override.c, !override.deleted
		}
		if !exists {
			continue
		}
		for _, pat := range c.assume {
			if MatchWildcard(pat, roleARN) {
				return true
			}
		}
	}
	if other := s.prins[s.base].other.Documents; len(other) > 0 {
		return Evaluate(other, Request{Action: assumeAction, Resource: roleARN}) == Allowed
	}
	return false
}

type sdocOverride struct {
	key     docKey
	c       content
	deleted bool
}

// delta is how a write (doc to c, or its deletion) changes the hold counts.
func (s *sched) delta(doc *sdoc, c content, deleted bool) map[int]int32 {
	delta := map[int]int32{}
	if doc.exists && s.reachable(doc.prin) {
		for _, i := range doc.cover {
			delta[i]--
		}
	}
	if !deleted && s.reachable(doc.prin) {
		for _, i := range s.coverOf(c) {
			delta[i]++
		}
	}
	// A base document that changes what the base may assume changes which
	// shard roles count.
	if !doc.prin.shard && (deleted || !slices.Equal(doc.cur.assume, c.assume)) && (len(doc.cur.assume) > 0 || len(c.assume) > 0) {
		ov := &sdocOverride{key: doc.key, c: c, deleted: deleted}
		for _, name := range s.order {
			p := s.prins[name]
			if !p.shard || !p.exists || !p.trustOK {
				continue
			}
			before, after := s.baseMayAssume(p.arn, nil), s.baseMayAssume(p.arn, ov)
			if before == after {
				continue
			}
			for _, other := range s.docs {
				if other.prin != p || !other.exists {
					continue
				}
				for _, i := range other.cover {
					if after {
						delta[i]++
					} else {
						delta[i]--
					}
				}
			}
		}
	}
	return delta
}

// lost lists the needed requests that a write (doc to c, or its deletion)
// would leave held by nothing.
func (s *sched) lost(doc *sdoc, c content, deleted bool) []int {
	var out []int
	for i, d := range s.delta(doc, c, deleted) {
		if d < 0 && s.count[i]+d <= 0 {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// recount computes the hold counts from scratch: at the start, and after a
// role appears or disappears.
func (s *sched) recount() {
	clear(s.count)
	for _, doc := range s.docs {
		if doc.exists && s.reachable(doc.prin) {
			for _, i := range doc.cover {
				s.count[i]++
			}
		}
	}
}

// inlineUsed is the size of a principal's rdsgate inline documents now.
func (s *sched) inlineUsed(p *sprin) int {
	n := 0
	for _, doc := range s.docs {
		if doc.prin == p && doc.exists && !doc.key.managed {
			n += doc.size
		}
	}
	return n
}

func (s *sched) attached(p *sprin) int {
	n := 0
	for _, doc := range s.docs {
		if doc.prin == p && doc.exists && doc.key.managed {
			n++
		}
	}
	return n
}

// fits reports whether writing c (of size) into doc stays within quotas,
// and if not, why.
func (s *sched) fits(doc *sdoc, size int) (bool, string) {
	p := doc.prin
	if p.shard && !p.exists {
		return false, "role " + p.name + " does not exist"
	}
	if doc.key.managed {
		if size > s.policySize {
			return false, fmt.Sprintf("managed policy %s would be %d characters, over %d", doc.key.policy, size, s.policySize)
		}
		if !doc.exists && s.attached(p)+p.other.Attached+1 > p.maxManaged {
			return false, fmt.Sprintf("%s %s has %d of %d managed policies attached", p.kind, p.name, s.attached(p)+p.other.Attached, p.maxManaged)
		}
		return true, ""
	}
	used := s.inlineUsed(p) + p.other.InlineSize
	if doc.exists {
		used -= doc.size
	}
	if used+size > p.inlineQuota {
		return false, fmt.Sprintf("the inline policies of %s %s would use %d of %d characters", p.kind, p.name, used+size, p.inlineQuota)
	}
	return true, ""
}

// commit records a write.
func (s *sched) commit(doc *sdoc, c content, d *Document, deleted bool, step Step) {
	if !deleted && d == nil {
		d = c.document()
	}
	old := doc.cur
	for i, d := range s.delta(doc, c, deleted) {
		s.count[i] += d
	}
	if deleted {
		doc.exists, doc.cur, doc.size, doc.cover = false, content{}, 0, nil
	} else {
		doc.exists, doc.cur, doc.size, doc.cover = true, c, d.Size(), s.coverOf(c)
	}
	step.Adds, step.Removes = s.databases(c.arns, old.arns), s.databases(old.arns, c.arns)
	s.out.Steps = append(s.out.Steps, step)
}

// databases names the databases whose patterns are in a and not in b.
func (s *sched) databases(a, b []string) []string {
	inB := map[string]bool{}
	for _, x := range b {
		p, _ := splitUser(x)
		inB[p] = true
	}
	var out []string
	for _, x := range a {
		p, _ := splitUser(x)
		if inB[p] {
			continue
		}
		if n, ok := s.names[p]; ok {
			out = append(out, n...)
		} else {
			out = append(out, x)
		}
	}
	return slices.Compact(sortStrings(out))
}

func (s *sched) step(doc *sdoc, action string, phase string) Step {
	return Step{Phase: phase, Action: action, Kind: doc.prin.kind, Principal: doc.prin.name, Policy: doc.key.policy}
}

func putAction(managed bool) string {
	if managed {
		return ActionPutManaged
	}
	return ActionPutInline
}

func deleteAction(managed bool) string {
	if managed {
		return ActionDeleteManaged
	}
	return ActionDeleteInline
}

// pending lists the documents still to write or delete, in plan order.
func (s *sched) pending() []*sdoc {
	var out []*sdoc
	for _, doc := range s.docs {
		switch {
		case doc.done:
		case doc.target == nil && !doc.exists:
			doc.done = true
		default:
			out = append(out, doc)
		}
	}
	rank := map[string]int{}
	for i, n := range s.order {
		rank[n] = i
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.target == nil) != (b.target == nil) {
			return a.target != nil
		}
		if rank[a.key.principal] != rank[b.key.principal] {
			return rank[a.key.principal] < rank[b.key.principal]
		}
		if a.key.managed != b.key.managed {
			return !a.key.managed
		}
		return a.key.policy < b.key.policy
	})
	return out
}

func (s *sched) run() error {
	s.prepare()
	budget := 4*len(s.docs) + 16
	for {
		pend := s.pending()
		if len(pend) == 0 {
			break
		}
		if budget--; budget < 0 {
			return fmt.Errorf("policies: internal error: the write schedule makes no progress (%d documents pending)", len(pend))
		}
		if s.pass(pend) {
			continue
		}
		if s.union(pend) || s.park(pend) {
			continue
		}
		return s.stuck(pend)
	}
	s.cleanup()
	return nil
}

// prepare creates the plan's new shard roles and brings trust policies and
// session lengths to the plan's: none of it takes anything away.
func (s *sched) prepare() {
	for _, name := range s.order {
		p := s.prins[name]
		if !p.wantRole {
			continue
		}
		pp := p.target
		switch {
		case !p.exists:
			s.out.Steps = append(s.out.Steps, Step{Phase: PhasePrepare, Action: ActionCreateRole, Kind: pp.Kind, Principal: pp.Name})
		case p.current.TrustPolicy == nil || !Equivalent(p.current.TrustPolicy, pp.TrustPolicy) || p.current.MaxSessionDuration != pp.MaxSessionDuration:
			s.out.Steps = append(s.out.Steps, Step{Phase: PhasePrepare, Action: ActionUpdateTrust, Kind: pp.Kind, Principal: pp.Name})
		default:
			continue
		}
		p.exists, p.trustOK = true, true
	}
	s.recount()
}

// pass makes every write that is safe now: those that take nothing away
// first, then the others. It reports whether it wrote anything.
func (s *sched) pass(pend []*sdoc) bool {
	wrote := false
	for _, grantsOnly := range []bool{true, false} {
		for _, doc := range pend {
			if doc.done {
				continue
			}
			if doc.target == nil {
				if grantsOnly {
					continue
				}
				if doc.parked && !s.settled(doc) {
					continue
				}
				if len(s.lost(doc, content{}, true)) == 0 {
					s.commit(doc, content{}, nil, true, s.step(doc, deleteAction(doc.key.managed), PhaseRevoke))
					doc.done, wrote = true, true
					if doc.temp {
						s.temps--
					}
				}
				continue
			}
			takes := doc.exists && (len(difference(doc.cur.arns, doc.tcont.arns)) > 0 || len(difference(doc.cur.assume, doc.tcont.assume)) > 0)
			if takes == grantsOnly {
				continue
			}
			if ok, _ := s.fits(doc, doc.target.Document.Size()); !ok {
				continue
			}
			if len(s.lost(doc, doc.tcont, false)) > 0 {
				continue
			}
			phase := PhaseGrant
			if takes {
				phase = PhaseRevoke
			}
			s.commit(doc, doc.tcont, doc.target.Document, false, s.step(doc, putAction(doc.key.managed), phase))
			doc.done, wrote = true, true
		}
	}
	return wrote
}

// settled reports whether every needed request a temporary document
// holds is held by a document in its final place too: only then has the
// temporary document done its job.
func (s *sched) settled(temp *sdoc) bool {
	final := map[int]bool{}
	for _, doc := range s.docs {
		if doc.done && doc.exists && doc.target != nil && s.reachable(doc.prin) {
			for _, i := range doc.cover {
				final[i] = true
			}
		}
	}
	for _, i := range temp.cover {
		if !final[i] {
			return false
		}
	}
	return true
}

// union breaks a cycle by writing one blocked document with what it must
// keep and as much of what it gains as fits: the gains unblock the documents
// that give them away, and a later write brings it to its final content.
func (s *sched) union(pend []*sdoc) bool {
	// A document that can hold all it gains with all it must keep first:
	// one interim write settles the cycle. Otherwise as much as fits.
	for _, whole := range []bool{true, false} {
		for _, doc := range pend {
			if doc.done || doc.target == nil || !doc.exists {
				continue
			}
			if s.unionOne(doc, whole) {
				return true
			}
		}
	}
	return false
}

func (s *sched) unionOne(doc *sdoc, whole bool) bool {
	lost := s.lost(doc, doc.tcont, false)
	if len(lost) == 0 {
		return false
	}
	gainARNs := difference(doc.tcont.arns, doc.cur.arns)
	gainAssume := difference(doc.tcont.assume, doc.cur.assume)
	if len(gainARNs) == 0 && len(gainAssume) == 0 {
		return false
	}
	keep := content{arns: intersectSorted(doc.cur.arns, doc.tcont.arns), assume: sortStrings(append(slices.Clone(doc.cur.assume), gainAssume...))}
	for _, i := range lost {
		keep.arns = append(keep.arns, s.keepingPatterns(doc, i)...)
	}
	keep.arns = slices.Compact(sortStrings(keep.arns))
	c := keep
	added := len(gainAssume) > 0
	if whole {
		c = content{arns: sortStrings(append(slices.Clone(keep.arns), gainARNs...)), assume: keep.assume}
		added = true
	}
	if ok, _ := s.fits(doc, c.document().Size()); !ok {
		return false
	}
	if !whole {
		// Gains held by nothing else first: they are what others wait for.
		sort.SliceStable(gainARNs, func(i, j int) bool { return s.scarce(gainARNs[i]) && !s.scarce(gainARNs[j]) })
		for _, a := range gainARNs {
			try := content{arns: sortStrings(append(slices.Clone(c.arns), a)), assume: c.assume}
			if ok, _ := s.fits(doc, try.document().Size()); !ok {
				break
			}
			c, added = try, true
		}
	}
	if !added || len(s.lost(doc, c, false)) > 0 {
		return false
	}
	st := s.step(doc, putAction(doc.key.managed), PhaseGrant)
	st.Interim = true
	d := c.document()
	st.Document = d
	s.commit(doc, c, d, false, st)
	s.out.Interim++
	return true
}

// scarce reports whether a pattern covers a needed request nothing else holds.
func (s *sched) scarce(pattern string) bool {
	for _, i := range s.coverOf(content{arns: []string{pattern}}) {
		if s.count[i] <= 1 {
			return true
		}
	}
	return false
}

// keepingPatterns are the patterns of doc's current content that allow
// needed request i.
func (s *sched) keepingPatterns(doc *sdoc, i int) []string {
	var out []string
	for _, a := range doc.cur.arns {
		if slices.Contains(s.coverOf(content{arns: []string{a}}), i) {
			out = append(out, a)
		}
	}
	return out
}

func intersectSorted(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// park breaks a cycle by copying what a blocked write would strand into
// temporary documents on principals with room, so the write becomes safe.
func (s *sched) park(pend []*sdoc) bool {
	for _, doc := range pend {
		if doc.done || !doc.exists {
			continue
		}
		var lost []int
		if doc.target == nil {
			lost = s.lost(doc, content{}, true)
		} else {
			if ok, _ := s.fits(doc, doc.target.Document.Size()); !ok {
				continue
			}
			lost = s.lost(doc, doc.tcont, false)
		}
		if len(lost) == 0 {
			continue
		}
		var patterns []string
		for _, i := range lost {
			patterns = append(patterns, s.keepingPatterns(doc, i)...)
		}
		patterns = slices.Compact(sortStrings(patterns))
		if s.parkPatterns(patterns, doc.prin) {
			return true
		}
	}
	return false
}

// parkPatterns writes patterns into new temporary documents, as few as fit.
func (s *sched) parkPatterns(patterns []string, avoid *sprin) bool {
	type spot struct {
		doc  *sdoc
		room int
	}
	var spots []spot
	for _, name := range s.order {
		p := s.prins[name]
		if !s.reachable(p) {
			continue
		}
		inlineRoom := p.inlineQuota - p.other.InlineSize - s.inlineUsed(p)
		if !s.hasTempInline(p) && inlineRoom > skeletonSize(false, true) {
			k := docKey{principal: p.name, policy: s.freeName(p, false)}
			spots = append(spots, spot{&sdoc{key: k, prin: p, temp: true, parked: true}, inlineRoom})
		}
		free := p.maxManaged - p.other.Attached - s.attached(p)
		for n := 0; n < free && n < 2; n++ {
			k := docKey{principal: p.name, managed: true, policy: s.freeName(p, true)}
			if n > 0 {
				k.policy = s.nextName(p, k.policy)
			}
			spots = append(spots, spot{&sdoc{key: k, prin: p, temp: true, parked: true}, s.policySize})
		}
	}
	// Where the base keeps reaching it first (the base, and the plan's
	// shard roles when the plan lets the base assume them), the blocked
	// document's own principal last, as it is usually the one short of
	// room; then the roomiest.
	lasting := func(p *sprin) bool { return !p.shard || p.wantRole && s.finalAssume(p) }
	sort.SliceStable(spots, func(i, j int) bool {
		a, b := spots[i].doc.prin, spots[j].doc.prin
		if lasting(a) != lasting(b) {
			return lasting(a)
		}
		if (a == avoid) != (b == avoid) {
			return b == avoid
		}
		return spots[i].room > spots[j].room
	})
	var plan []struct {
		doc *sdoc
		c   content
	}
	rest := patterns
	for _, sp := range spots {
		if len(rest) == 0 {
			break
		}
		c := content{}
		for len(rest) > 0 {
			try := content{arns: append(slices.Clone(c.arns), rest[0])}
			if try.document().Size() > sp.room {
				break
			}
			c, rest = try, rest[1:]
		}
		if len(c.arns) > 0 {
			plan = append(plan, struct {
				doc *sdoc
				c   content
			}{sp.doc, c})
		}
	}
	if len(rest) > 0 {
		return false
	}
	for _, pl := range plan {
		s.docs[pl.doc.key] = pl.doc
		st := s.step(pl.doc, putAction(pl.doc.key.managed), PhaseGrant)
		st.Temporary = true
		d := pl.c.document()
		st.Document = d
		s.commit(pl.doc, pl.c, d, false, st)
		s.out.Temporary++
		s.temps++
		s.out.MostTemporary = max(s.out.MostTemporary, s.temps)
	}
	return true
}

// finalAssume reports whether the base's documents in the plan let it
// assume the role.
func (s *sched) finalAssume(p *sprin) bool {
	for _, doc := range s.docs {
		if doc.prin.shard || doc.target == nil {
			continue
		}
		for _, pat := range doc.tcont.assume {
			if MatchWildcard(pat, p.arn) {
				return true
			}
		}
	}
	return false
}

func (s *sched) hasTempInline(p *sprin) bool {
	for _, doc := range s.docs {
		if doc.prin == p && doc.exists && doc.temp && !doc.key.managed {
			return true
		}
	}
	return false
}

// freeName is the first temporary name not in use on p.
func (s *sched) freeName(p *sprin, managed bool) string {
	for n := 1; ; n++ {
		name := ParkInlineName(n)
		if managed {
			name = ParkManagedName(p.name, n)
		}
		if d := s.docs[docKey{principal: p.name, managed: managed, policy: name}]; d == nil || !d.exists && d.done {
			return name
		}
	}
}

func (s *sched) nextName(p *sprin, after string) string {
	for n := 1; ; n++ {
		name := ParkManagedName(p.name, n)
		if name <= after {
			continue
		}
		if d := s.docs[docKey{principal: p.name, managed: true, policy: name}]; d == nil || !d.exists && d.done {
			return name
		}
	}
}

// stuck explains why nothing can be written.
func (s *sched) stuck(pend []*sdoc) error {
	var why []string
	for _, doc := range pend {
		if len(why) == 5 {
			why = append(why, fmt.Sprintf("and %d more", len(pend)-5))
			break
		}
		if doc.target != nil {
			if ok, reason := s.fits(doc, doc.target.Document.Size()); !ok {
				why = append(why, fmt.Sprintf("%s of %s %s cannot be written: %s", doc.key.policy, doc.prin.kind, doc.prin.name, reason))
				continue
			}
		}
		var lost []int
		if doc.target == nil {
			lost = s.lost(doc, content{}, true)
		} else {
			lost = s.lost(doc, doc.tcont, false)
		}
		if len(lost) > 0 {
			why = append(why, fmt.Sprintf("%s of %s %s would take away %s, which nothing else grants yet", doc.key.policy, doc.prin.kind, doc.prin.name, s.need[lost[0]]))
		}
	}
	var room []string
	for _, name := range s.order {
		p := s.prins[name]
		if !s.reachable(p) {
			continue
		}
		room = append(room, fmt.Sprintf("%s %s: %d inline characters and %d managed policy slots free", p.kind, p.name,
			max(0, p.inlineQuota-p.other.InlineSize-s.inlineUsed(p)), max(0, p.maxManaged-p.other.Attached-s.attached(p))))
	}
	return &GapError{Msg: fmt.Sprintf("no order of writes takes IAM to this plan without a gap in access within the quotas: %s. "+
		"Room for temporary documents: %s. Free a managed policy slot or inline space on %s %s (or raise its quota), "+
		"or plan against what IAM holds (shards plan with AWS credentials, or --previous) so fewer databases move",
		strings.Join(why, "; "), strings.Join(room, "; "), s.desired.Base.Kind, s.base)}
}

// cleanup deletes the shard roles the plan no longer has; their documents
// are gone by now.
func (s *sched) cleanup() {
	for _, name := range s.order {
		p := s.prins[name]
		if p.shard && p.exists && !p.wantRole {
			s.out.Steps = append(s.out.Steps, Step{Phase: PhaseCleanup, Action: ActionDeleteRole, Kind: p.kind, Principal: p.name})
			p.exists = false
		}
	}
}
