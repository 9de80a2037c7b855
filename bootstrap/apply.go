package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/rdsgate/rdsgate/policies"
)

// ApplyOptions control ApplyPlan.
type ApplyOptions struct {
	// DryRun stops after working out the steps.
	DryRun bool
	// Progress is told about every step and every wait; nil is silent.
	Progress Progress
	// Lease says how to take the lease on the base principal that keeps a
	// second apply from writing the same documents at the same time.
	Lease LeaseOptions
}

// StepResult is what one step did.
type StepResult struct {
	Step    policies.Step
	Writes  int
	Elapsed time.Duration
}

// ApplyReport says what an apply did.
type ApplyReport struct {
	// Steps are the steps worked out against AWS's state, in order; with
	// DryRun none of them ran.
	Steps   []StepResult
	Calls   int
	Writes  int
	Elapsed time.Duration
	// Foreign lists rdsgate-named resources without rdsgate's tag, which
	// were left alone.
	Foreign []string
	// Done counts the steps that completed; when an apply fails, the ones
	// after it did not run.
	Done int
	// LeaseOwner is the name the apply held the base principal's lease under.
	LeaseOwner string
	// Interim and Temporary count the writes that broke cycles of databases
	// changing places: documents written with old and new together, and
	// temporary documents created and removed again.
	Interim, Temporary int
	// Chains is the check, after the writes, that the base principal can
	// assume each shard role: a boundary or an explicit deny rdsgate does
	// not manage could still stand in the way.
	Chains []Hop
}

// BrokenChains returns the hops that failed the check after apply.
func (r *ApplyReport) BrokenChains() []Hop {
	var out []Hop
	for _, h := range r.Chains {
		if !h.OK {
			out = append(out, h)
		}
	}
	return out
}

// ErrPreflight marks a problem found before any write.
var ErrPreflight = errors.New("nothing was written")

// ApplyPlan makes IAM hold the desired plan. It reads what IAM holds, orders
// the writes with policies.Schedule from that state (not from the plan's own
// steps, which assume the previous plan is what IAM holds), and runs them:
// after every write each database user that both the old and the new state
// allow is still allowed. Every step checks AWS before writing, so a second
// apply makes no write, and an apply stopped at any point converges when run
// again. When no such order fits the account's quotas it writes nothing.
func ApplyPlan(ctx context.Context, c *Clients, desired *policies.Plan, opts ApplyOptions) (*ApplyReport, error) {
	start := time.Now()
	calls0, writes0 := c.Calls.CountPlanWrites()
	report := &ApplyReport{}
	finish := func() {
		calls, writes := c.Calls.CountPlanWrites()
		report.Calls, report.Writes, report.Elapsed = calls-calls0, writes-writes0, time.Since(start)
	}
	defer finish()
	if err := desired.Check(); err != nil {
		return report, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	c.UseIAMRegion(desired.Partition)
	progress := opts.Progress
	if progress == nil {
		progress = NoProgress{}
	}
	ctx = WithNotes(ctx, progress.Note)
	quotas, err := checkAccountQuotas(ctx, c.IAM, desired)
	if err != nil {
		return report, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	// What IAM holds decides the writes. Read once without the lease: when
	// nothing is to be written, the apply ends there and writes nothing.
	obs, steps, err := planSteps(ctx, c, desired, quotas, report)
	if err != nil {
		return report, err
	}
	var lease *Lease
	if !opts.DryRun && len(steps) > 0 {
		// One writer at a time: with the lease held, read again, so the
		// writes are ordered from a picture no other apply is changing.
		lo := opts.Lease
		if lo.Settle == 0 {
			lo.Settle = c.LeaseSettle
		}
		lease, err = AcquireLease(ctx, c.IAM, desired.Base.Kind, desired.Base.Name, lo, progress.Note)
		if err != nil {
			if _, ok := err.(*LeaseHeldError); ok {
				return report, fmt.Errorf("%w: %w", ErrPreflight, err)
			}
			return report, err
		}
		report.LeaseOwner = lease.Owner()
		defer func() {
			if err := lease.Release(context.WithoutCancel(ctx)); err != nil {
				progress.Note(fmt.Sprintf("could not release the lease (it runs out by itself): %v", err))
			}
		}()
		if obs, steps, err = planSteps(ctx, c, desired, quotas, report); err != nil {
			return report, err
		}
	}
	report.Steps = nil
	for _, st := range steps {
		report.Steps = append(report.Steps, StepResult{Step: st})
	}
	if opts.DryRun {
		return report, nil
	}
	ex := &executor{api: c.IAM, desired: desired, obs: obs}
	expect := newExpectation(obs.Plan)
	verified := false
	progress.Start(len(steps))
	for i := range report.Steps {
		r := &report.Steps[i]
		if takesAway(r.Step) {
			// Before anything is taken away: still this apply's lease, and
			// IAM still what this apply read and wrote.
			if err := lease.Check(ctx); err != nil {
				progress.Done()
				return report, err
			}
			if !verified {
				if err := expect.verify(ctx, c.IAM, desired); err != nil {
					progress.Done()
					return report, err
				}
				verified = true
			}
		}
		_, before := c.Calls.Count()
		t0 := time.Now()
		err := ex.run(ctx, r.Step)
		_, after := c.Calls.Count()
		r.Writes, r.Elapsed = after-before, time.Since(t0)
		progress.Step(i, *r, err)
		if err != nil {
			progress.Done()
			return report, fmt.Errorf("step %d of %d (%s %s %s): %w", i+1, len(steps), r.Step.Action, r.Step.Principal, r.Step.Policy, err)
		}
		expect.wrote(r.Step, ex)
		report.Done++
	}
	progress.Done()
	for _, pp := range desired.Principals {
		if !pp.Shard {
			continue
		}
		hops, err := CheckChain(ctx, c.IAM, []string{desired.Base.ARN, pp.ARN}, desired.Settings.ExternalID)
		if err != nil {
			return report, fmt.Errorf("checking that %s can assume %s: %w", desired.Base.Name, pp.Name, err)
		}
		report.Chains = append(report.Chains, hops...)
	}
	return report, nil
}

// planSteps reads what IAM holds and orders the writes from it.
func planSteps(ctx context.Context, c *Clients, desired *policies.Plan, quotas *policies.Quotas, report *ApplyReport) (*Observed, []policies.Step, error) {
	obs, err := ReadState(ctx, c.IAM, desired)
	if err != nil {
		return nil, nil, err
	}
	report.Foreign = obs.Foreign
	if err := preflight(obs, desired); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	ws, err := policies.Schedule(policies.ScheduleInput{Current: obs.Plan, Desired: desired, Other: obs.others(), Quotas: quotas})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	report.Interim, report.Temporary = ws.Interim, ws.Temporary
	return obs, insertBeforeCleanup(ws.Steps, orphanSteps(obs, desired)), nil
}

// others is what each principal holds outside rdsgate's documents.
func (obs *Observed) others() map[string]policies.OtherPolicies {
	byARN := obs.policiesByARN()
	out := map[string]policies.OtherPolicies{}
	for name, p := range obs.Principals {
		out[name] = p.Other(byARN)
	}
	return out
}

// takesAway reports whether a step removes anything.
func takesAway(st policies.Step) bool {
	switch st.Action {
	case policies.ActionDeleteInline, policies.ActionDeleteManaged, policies.ActionDeleteRole:
		return true
	}
	return len(st.Removes) > 0
}

// ErrIAMChanged means IAM changed under a running apply.
var ErrIAMChanged = errors.New("IAM changed while this apply ran")

// expectation is what IAM should hold of rdsgate's documents: what the
// apply read, with its own writes since.
type expectation map[string]*policies.Document

func docID(principal string, managed bool, name string) string {
	if managed {
		return principal + " managed policy " + name
	}
	return principal + " inline policy " + name
}

func newExpectation(p *policies.Plan) expectation {
	e := expectation{}
	for _, pp := range p.Principals {
		for _, pol := range pp.InlinePolicies {
			e[docID(pp.Name, false, pol.Name)] = pol.Document
		}
		for _, pol := range pp.ManagedPolicies {
			e[docID(pp.Name, true, pol.Name)] = pol.Document
		}
	}
	return e
}

func (e expectation) wrote(st policies.Step, ex *executor) {
	switch st.Action {
	case policies.ActionPutInline, policies.ActionPutManaged:
		managed := st.Action == policies.ActionPutManaged
		doc := st.Document
		if doc == nil {
			if pp := ex.principal(st.Principal); pp != nil {
				if pol := ex.policy(pp, st.Policy, managed); pol != nil {
					doc = pol.Document
				}
			}
		}
		e[docID(st.Principal, managed, st.Policy)] = doc
	case policies.ActionDeleteInline:
		delete(e, docID(st.Principal, false, st.Policy))
	case policies.ActionDeleteManaged:
		delete(e, docID(st.Principal, true, st.Policy))
	case policies.ActionDeleteRole:
		for k := range e {
			if strings.HasPrefix(k, st.Principal+" ") {
				delete(e, k)
			}
		}
	}
}

// verify reads IAM again and compares it with the expectation.
func (e expectation) verify(ctx context.Context, api IAMAPI, desired *policies.Plan) error {
	obs, err := ReadState(ctx, api, desired)
	if err != nil {
		return err
	}
	now := newExpectation(obs.Plan)
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(e)) {
		switch got := now[k]; {
		case got == nil:
			diffs = append(diffs, k+" is gone")
		case !policies.Equivalent(got, e[k]):
			diffs = append(diffs, k+" was rewritten")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(now)) {
		if e[k] == nil {
			diffs = append(diffs, k+" appeared")
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return fmt.Errorf("%w (%s): someone else wrote rdsgate's documents (another apply without the lease, or a hand edit); "+
		"this one stopped before taking anything away, so nothing lost its grant: run it again, and it orders its writes from what IAM holds then",
		ErrIAMChanged, strings.Join(diffs, "; "))
}

// insertBeforeCleanup puts extra steps before the role deletions that end a
// schedule.
func insertBeforeCleanup(steps, extra []policies.Step) []policies.Step {
	i := len(steps)
	for i > 0 && steps[i-1].Phase == policies.PhaseCleanup {
		i--
	}
	return slices.Concat(steps[:i], extra, steps[i:])
}

// orphanSteps deletes rdsgate connect policies for this base that no
// principal has attached and the plan does not want.
func orphanSteps(obs *Observed, desired *policies.Plan) []policies.Step {
	want := map[string]bool{}
	for _, pp := range desired.Principals {
		for _, pol := range pp.ManagedPolicies {
			want[pol.Name] = true
		}
	}
	var out []policies.Step
	for _, p := range obs.Orphans {
		if !want[p.Name] && p.Tags[TagBase] == desired.Base.ARN {
			out = append(out, policies.Step{Phase: policies.PhaseRevoke, Action: policies.ActionDeleteManaged, Kind: policies.PrincipalRole, Principal: "(unattached)", Policy: p.Name})
		}
	}
	return out
}

// checkAccountQuotas compares the plan's quotas with the account's, and
// returns the account's; with a nil plan it only reads them.
func checkAccountQuotas(ctx context.Context, api IAMAPI, pl *policies.Plan) (*policies.Quotas, error) {
	out, err := api.GetAccountSummary(ctx, &iam.GetAccountSummaryInput{})
	if err != nil {
		return nil, explain(err, "iam:GetAccountSummary", "the account")
	}
	live := out.SummaryMap
	q := policies.DefaultQuotas()
	for key, field := range map[string]*int{
		"PolicySizeQuota": &q.PolicySize, "RolePolicySizeQuota": &q.RolePolicySize, "UserPolicySizeQuota": &q.UserPolicySize,
		"AttachedPoliciesPerRoleQuota": &q.AttachedPoliciesPerRole, "AttachedPoliciesPerUserQuota": &q.AttachedPoliciesPerUser,
		"AssumeRolePolicySizeQuota": &q.AssumeRolePolicySize,
	} {
		if v, ok := live[key]; ok && v > 0 {
			*field = int(v)
		}
	}
	if pl == nil {
		return &q, nil
	}
	s := pl.Settings
	inlineKey, attachedKey := "RolePolicySizeQuota", "AttachedPoliciesPerRoleQuota"
	if pl.Base.Kind == policies.PrincipalUser {
		inlineKey, attachedKey = "UserPolicySizeQuota", "AttachedPoliciesPerUserQuota"
	}
	checks := []struct {
		key, flag string
		planned   int
	}{
		{"PolicySizeQuota", "--policy-size", s.PolicySize},
		{inlineKey, "--" + strings.ToLower(string(pl.Base.Kind)) + "-policy-size", s.InlineSize},
		{attachedKey, "--max-managed", s.MaxManaged},
		{"AssumeRolePolicySizeQuota", "--trust-policy-size", s.AssumeRolePolicySize},
	}
	for _, ch := range checks {
		if v, ok := live[ch.key]; ok && int(v) < ch.planned {
			return nil, fmt.Errorf("the plan assumes %s %d but account %s allows %d; plan again with %s %d", ch.key, ch.planned, pl.AccountID, v, ch.flag, v)
		}
	}
	if s.MaxShardRoles > 0 {
		if v, ok := live["RolesQuota"]; ok && int(v) < countShards(pl) {
			return nil, fmt.Errorf("the plan needs %d shard roles but account %s allows %d roles in all", countShards(pl), pl.AccountID, v)
		}
	}
	return &q, nil
}

func countShards(pl *policies.Plan) int {
	n := 0
	for _, pp := range pl.Principals {
		if pp.Shard {
			n++
		}
	}
	return n
}

// preflight stops an apply that would touch what rdsgate does not own, or
// that IAM would refuse halfway.
func preflight(obs *Observed, desired *policies.Plan) error {
	need := map[string]bool{}
	for _, pp := range desired.Principals {
		if pp.Shard {
			need["role "+pp.Name] = true
		}
		for _, pol := range pp.ManagedPolicies {
			need["policy "+pol.ARN] = true
		}
	}
	for _, f := range obs.Foreign {
		name, _, _ := strings.Cut(f, " (")
		if need[name] {
			return fmt.Errorf("%s already exists and rdsgate does not own it (%s): rename or delete it, or tag it %s=%s if rdsgate should manage it",
				name, strings.TrimSuffix(strings.SplitN(f, " (", 2)[1], ")"), TagManaged, TagManagedValue)
		}
	}
	base := obs.Principals[desired.Base.Name]
	s := desired.Settings
	if other := base.OtherInlineSize(); other > s.ReservedInline {
		return &ReservationError{Kind: base.Kind, Name: base.Name, Inline: true, Used: other, Reserved: s.ReservedInline, Quota: s.InlineSize}
	}
	others := 0
	for _, arn := range base.Attached {
		if !ownManagedARN(base.Name, arn) {
			others++
		}
	}
	if others > s.ReservedManaged {
		return &ReservationError{Kind: base.Kind, Name: base.Name, Used: others, Reserved: s.ReservedManaged, Quota: s.MaxManaged}
	}
	return nil
}

// ReservationError says that the base principal's other policies take more
// of a quota than the plan reserved for them: IAM would refuse a write of
// the plan. The CLI's text names its flags; the provider names attributes.
type ReservationError struct {
	Kind     policies.PrincipalKind
	Name     string
	Inline   bool // the inline size budget; otherwise the managed attachments
	Used     int  // what the other policies take now
	Reserved int  // what the plan reserved for them
	Quota    int
}

func (e *ReservationError) Error() string {
	if e.Inline {
		return fmt.Sprintf("the other inline policies of %s %s use %d characters, but the plan reserved %d of its %d: IAM would refuse the connect policy; plan again with --reserved-inline %d",
			e.Kind, e.Name, e.Used, e.Reserved, e.Quota, e.Used)
	}
	return fmt.Sprintf("%d managed policies outside the plan are attached to %s %s, but the plan reserved %d of its %d; plan again with --reserved-managed %d",
		e.Used, e.Kind, e.Name, e.Reserved, e.Quota, e.Used)
}

// Others is what a principal holds outside rdsgate's connect documents:
// what a plan for it must reserve.
type Others struct {
	Exists bool
	// Inline is the size of each other inline policy, by name.
	Inline map[string]int
	// Managed lists the ARNs of the other attached managed policies.
	Managed []string
}

// ReadOthers reads the principal's policies that are not rdsgate's connect
// documents. A principal that does not exist yet has none.
func ReadOthers(ctx context.Context, api IAMAPI, kind policies.PrincipalKind, name string) (*Others, error) {
	p, err := ReadPrincipal(ctx, api, kind, name)
	if err != nil || p == nil {
		return &Others{Inline: map[string]int{}}, err
	}
	o := &Others{Exists: true, Inline: map[string]int{}}
	for n, d := range p.Inline {
		if !ownInline(n) {
			o.Inline[n] = d.Size()
		}
	}
	for _, arn := range p.Attached {
		if !ownManagedARN(p.Name, arn) {
			o.Managed = append(o.Managed, arn)
		}
	}
	sort.Strings(o.Managed)
	return o, nil
}

// ownManagedARN reports whether an attached policy's ARN is one of
// rdsgate's connect or parking documents for the principal.
func ownManagedARN(principal, arn string) bool {
	_, rest, ok := strings.Cut(arn, ":policy"+policies.ManagedPolicyPath)
	return ok && !strings.Contains(rest, "/") && ownManaged(principal, rest)
}

// executor runs steps; every step reads before it writes.
type executor struct {
	api     IAMAPI
	desired *policies.Plan
	obs     *Observed
}

func (e *executor) principal(name string) *policies.PlanPrincipal {
	for i := range e.desired.Principals {
		if e.desired.Principals[i].Name == name {
			return &e.desired.Principals[i]
		}
	}
	return nil
}

func (e *executor) policy(pp *policies.PlanPrincipal, name string, managed bool) *policies.PlanPolicy {
	list := pp.InlinePolicies
	if managed {
		list = pp.ManagedPolicies
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func (e *executor) tags() []iamtypes.Tag {
	return []iamtypes.Tag{
		{Key: aws.String(TagManaged), Value: aws.String(TagManagedValue)},
		{Key: aws.String(TagBase), Value: aws.String(e.desired.Base.ARN)},
	}
}

func (e *executor) run(ctx context.Context, st policies.Step) error {
	switch st.Action {
	case policies.ActionCreateRole, policies.ActionUpdateTrust:
		pp := e.principal(st.Principal)
		if pp == nil {
			return fmt.Errorf("the plan has no principal %s", st.Principal)
		}
		return e.ensureRole(ctx, pp)
	case policies.ActionPutInline, policies.ActionPutManaged:
		managed := st.Action == policies.ActionPutManaged
		doc := st.Document
		if doc == nil {
			pp := e.principal(st.Principal)
			if pp == nil {
				return fmt.Errorf("the plan has no principal %s", st.Principal)
			}
			pol := e.policy(pp, st.Policy, managed)
			if pol == nil {
				return fmt.Errorf("the plan has no policy %s of %s", st.Policy, st.Principal)
			}
			doc = pol.Document
		}
		if !managed {
			return e.putInline(ctx, st.Kind, st.Principal, st.Policy, doc)
		}
		arn := policies.PolicyARN(e.desired.Partition, e.desired.AccountID, policies.ManagedPolicyPath, st.Policy)
		if err := e.ensurePolicy(ctx, policies.ManagedPolicyPath, st.Policy, arn, doc, st.Principal); err != nil {
			return err
		}
		return e.ensureAttached(ctx, st.Kind, st.Principal, arn)
	case policies.ActionDeleteInline:
		return e.deleteInline(ctx, st.Kind, st.Principal, st.Policy)
	case policies.ActionDeleteManaged:
		return e.deletePolicy(ctx, policies.PolicyARN(e.desired.Partition, e.desired.AccountID, policies.ManagedPolicyPath, st.Policy))
	case policies.ActionDeleteRole:
		return e.deleteRole(ctx, st.Principal)
	}
	return fmt.Errorf("unknown step action %q", st.Action)
}

func subjectOf(kind policies.PrincipalKind, name, policy string) string {
	s := fmt.Sprintf("%s %s", kind, name)
	if policy != "" {
		s += " policy " + policy
	}
	return s
}

// ensureRole creates a shard role or brings its trust policy and session
// length to the plan's.
func (e *executor) ensureRole(ctx context.Context, pp *policies.PlanPrincipal) error {
	subject := subjectOf(pp.Kind, pp.Name, "")
	out, err := e.api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(pp.Name)})
	if isNotFound(err) {
		existed, cerr := createRole(ctx, e.api, &iam.CreateRoleInput{
			RoleName: aws.String(pp.Name), Path: aws.String(pp.Path), AssumeRolePolicyDocument: aws.String(string(pp.TrustPolicy.JSON())),
			MaxSessionDuration: aws.Int32(int32(pp.MaxSessionDuration)), Tags: e.tags(),
			Description: aws.String("rdsgate shard role: holds rds-db:connect permissions for " + e.desired.Base.ARN),
		})
		if cerr != nil || !existed {
			return cerr
		}
		// Created meanwhile: read it once more and bring it to the plan.
		if out, err = e.api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(pp.Name)}); isNotFound(err) {
			return existsUnseen(subject)
		}
	}
	if err != nil {
		return explain(err, "iam:GetRole", subject)
	}
	r := out.Role
	if tagMap(r.Tags)[TagManaged] != TagManagedValue {
		return fmt.Errorf("%s exists without the %s tag; rdsgate does not change roles it did not create", subject, TagManaged)
	}
	current, _ := decodeDocument(r.AssumeRolePolicyDocument, subject+" trust policy")
	return convergeRole(ctx, e.api, subject, pp.Name,
		roleShape{trust: current, maxSession: int(aws.ToInt32(r.MaxSessionDuration))},
		roleShape{trust: pp.TrustPolicy, maxSession: pp.MaxSessionDuration}, nil)
}

// putInline writes an inline policy unless IAM already holds an equivalent.
func (e *executor) putInline(ctx context.Context, kind policies.PrincipalKind, principal, name string, doc *policies.Document) error {
	subject := subjectOf(kind, principal, name)
	body := aws.String(string(doc.JSON()))
	if kind == policies.PrincipalUser {
		out, err := e.api.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(name)})
		if err == nil {
			if cur, derr := decodeDocument(out.PolicyDocument, subject); derr == nil && policies.Equivalent(cur, doc) {
				return nil
			}
		} else if !isNotFound(err) {
			return explain(err, "iam:GetUserPolicy", subject)
		}
		_, err = e.api.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(name), PolicyDocument: body})
		return explainPut(err, "iam:PutUserPolicy", subject, doc, e.desired.Settings.InlineSize)
	}
	out, err := e.api.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(name)})
	if err == nil {
		if cur, derr := decodeDocument(out.PolicyDocument, subject); derr == nil && policies.Equivalent(cur, doc) {
			return nil
		}
	} else if !isNotFound(err) {
		return explain(err, "iam:GetRolePolicy", subject)
	}
	_, err = e.api.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(name), PolicyDocument: body})
	return explainPut(err, "iam:PutRolePolicy", subject, doc, policies.QuotaValue("RolePolicySizeQuota"))
}

// explainPut adds the planned size to a LimitExceeded error.
func explainPut(err error, op, subject string, doc *policies.Document, quota int) error {
	if err == nil {
		return nil
	}
	e := explain(err, op, subject)
	var ae *AWSError
	if errors.As(e, &ae) && strings.HasPrefix(ae.Code, "LimitExceeded") {
		ae.Hint = fmt.Sprintf("rdsgate planned this document at %d characters against a quota of %d. ", doc.Size(), quota) + ae.Hint
	}
	return e
}

// ensurePolicy creates a managed policy, or makes the plan's document its
// default version, pruning the oldest version when IAM's five are in use.
func (e *executor) ensurePolicy(ctx context.Context, path, name, arn string, doc *policies.Document, owner string) error {
	subject := fmt.Sprintf("managed policy %s", arn)
	body := aws.String(string(doc.JSON()))
	out, err := e.api.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if isNotFound(err) {
		_, err = e.api.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(name), Path: aws.String(path), PolicyDocument: body,
			Tags: e.tags(), Description: aws.String("rdsgate connect shard of " + owner)})
		if errorCode(err) != "EntityAlreadyExists" {
			return explainPut(err, "iam:CreatePolicy", subject, doc, e.desired.Settings.PolicySize)
		}
		// Created meanwhile: read it once more and bring it to the plan.
		if out, err = e.api.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)}); isNotFound(err) {
			return fmt.Errorf("%s: IAM says it exists but does not show it; IAM is eventually consistent, so run again in a minute", subject)
		}
	}
	if err != nil {
		return explain(err, "iam:GetPolicy", subject)
	}
	p := &ObservedPolicy{ARN: arn, Name: name, DefaultVersion: aws.ToString(out.Policy.DefaultVersionId)}
	if err := readPolicyDocument(ctx, e.api, p); err != nil {
		return err
	}
	if !p.Managed() {
		return fmt.Errorf("%s exists without the %s tag; rdsgate does not change policies it did not create", subject, TagManaged)
	}
	if policies.Equivalent(p.Document, doc) {
		return nil
	}
	versions, err := e.api.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return explain(err, "iam:ListPolicyVersions", subject)
	}
	if len(versions.Versions) >= policies.QuotaValue("PolicyVersionsInUseQuota") {
		var oldest *iamtypes.PolicyVersion
		for i := range versions.Versions {
			v := &versions.Versions[i]
			if v.IsDefaultVersion {
				continue
			}
			if oldest == nil || aws.ToTime(v.CreateDate).Before(aws.ToTime(oldest.CreateDate)) ||
				aws.ToTime(v.CreateDate).Equal(aws.ToTime(oldest.CreateDate)) && versionNumber(v.VersionId) < versionNumber(oldest.VersionId) {
				oldest = v
			}
		}
		if oldest != nil {
			if _, err := e.api.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arn), VersionId: oldest.VersionId}); err != nil && !isNotFound(err) {
				return explain(err, "iam:DeletePolicyVersion", subject)
			}
		}
	}
	_, err = e.api.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(arn), PolicyDocument: body, SetAsDefault: true})
	return explainPut(err, "iam:CreatePolicyVersion", subject, doc, e.desired.Settings.PolicySize)
}

func versionNumber(id *string) int {
	n := 0
	for _, c := range strings.TrimPrefix(aws.ToString(id), "v") {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func (e *executor) ensureAttached(ctx context.Context, kind policies.PrincipalKind, principal, arn string) error {
	p, err := ReadAttached(ctx, e.api, kind, principal)
	if err != nil {
		return err
	}
	if contains(p, arn) {
		return nil
	}
	subject := subjectOf(kind, principal, arn)
	if kind == policies.PrincipalUser {
		_, err = e.api.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(principal), PolicyArn: aws.String(arn)})
		return explain(err, "iam:AttachUserPolicy", subject)
	}
	_, err = e.api.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(principal), PolicyArn: aws.String(arn)})
	return explain(err, "iam:AttachRolePolicy", subject)
}

// ReadAttached lists the managed policies attached to a principal.
func ReadAttached(ctx context.Context, api IAMAPI, kind policies.PrincipalKind, name string) ([]string, error) {
	var arns []string
	if kind == policies.PrincipalUser {
		pages := iam.NewListAttachedUserPoliciesPaginator(api, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(name)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, explain(err, "iam:ListAttachedUserPolicies", subjectOf(kind, name, ""))
			}
			for _, a := range page.AttachedPolicies {
				arns = append(arns, aws.ToString(a.PolicyArn))
			}
		}
		return arns, nil
	}
	pages := iam.NewListAttachedRolePoliciesPaginator(api, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, explain(err, "iam:ListAttachedRolePolicies", subjectOf(kind, name, ""))
		}
		for _, a := range page.AttachedPolicies {
			arns = append(arns, aws.ToString(a.PolicyArn))
		}
	}
	return arns, nil
}

func (e *executor) deleteInline(ctx context.Context, kind policies.PrincipalKind, principal, name string) error {
	subject := subjectOf(kind, principal, name)
	var err error
	if kind == policies.PrincipalUser {
		_, err = e.api.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(name)})
	} else {
		_, err = e.api.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(name)})
	}
	if isNotFound(err) {
		return nil
	}
	return explain(err, "iam:Delete"+titleKind(kind)+"Policy", subject)
}

func titleKind(k policies.PrincipalKind) string {
	if k == policies.PrincipalUser {
		return "User"
	}
	return "Role"
}

// deletePolicy detaches an rdsgate managed policy from everything and
// deletes it with its versions.
func (e *executor) deletePolicy(ctx context.Context, arn string) error {
	subject := "managed policy " + arn
	out, err := e.api.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return explain(err, "iam:GetPolicy", subject)
	}
	tags, err := e.api.ListPolicyTags(ctx, &iam.ListPolicyTagsInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return explain(err, "iam:ListPolicyTags", subject)
	}
	if tagMap(tags.Tags)[TagManaged] != TagManagedValue {
		return fmt.Errorf("%s has no %s tag; rdsgate does not delete policies it did not create", subject, TagManaged)
	}
	if aws.ToInt32(out.Policy.AttachmentCount) > 0 {
		ents, err := e.api.ListEntitiesForPolicy(ctx, &iam.ListEntitiesForPolicyInput{PolicyArn: aws.String(arn)})
		if err != nil {
			return explain(err, "iam:ListEntitiesForPolicy", subject)
		}
		for _, r := range ents.PolicyRoles {
			if _, err := e.api.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: r.RoleName, PolicyArn: aws.String(arn)}); err != nil && !isNotFound(err) {
				return explain(err, "iam:DetachRolePolicy", subject)
			}
		}
		for _, u := range ents.PolicyUsers {
			if _, err := e.api.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: u.UserName, PolicyArn: aws.String(arn)}); err != nil && !isNotFound(err) {
				return explain(err, "iam:DetachUserPolicy", subject)
			}
		}
		if len(ents.PolicyGroups) > 0 {
			return fmt.Errorf("%s is attached to IAM groups; rdsgate never attaches to groups, so someone else did: detach it by hand", subject)
		}
	}
	versions, err := e.api.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return explain(err, "iam:ListPolicyVersions", subject)
	}
	for _, v := range versions.Versions {
		if !v.IsDefaultVersion {
			if _, err := e.api.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arn), VersionId: v.VersionId}); err != nil && !isNotFound(err) {
				return explain(err, "iam:DeletePolicyVersion", subject)
			}
		}
	}
	if _, err := e.api.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arn)}); err != nil && !isNotFound(err) {
		return explain(err, "iam:DeletePolicy", subject)
	}
	return nil
}

// deleteRole deletes a shard role rdsgate made, once it holds nothing else
// (DeleteRole: rdsgate's own policies go with it, anyone else's stop it).
func (e *executor) deleteRole(ctx context.Context, name string) error {
	return DeleteRole(ctx, e.api, name)
}
