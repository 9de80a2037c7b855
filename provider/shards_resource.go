package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func newPolicyShardsResource() resource.Resource { return &policyShardsResource{} }

type policyShardsResource struct{ p *providerData }

type shardsModel struct {
	ID types.String `tfsdk:"id"`
	shardInputs
	PendingInline  types.Map `tfsdk:"pending_inline_policies"`
	PendingManaged types.Set `tfsdk:"pending_managed_policy_arns"`
	shardOutputs
}

// privatePlan is the private state key of the plan in effect: the previous
// plan of the next change, so changes are incremental.
const privatePlan = "plan"

// privateGetter is what the private state of a plan request and of a state
// response have in common: reading a key.
type privateGetter interface {
	GetKey(context.Context, string) ([]byte, diag.Diagnostics)
}

func (r *policyShardsResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_policy_shards"
}

func (r *policyShardsResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	attrs := shardInputAttrs()
	maps.Copy(attrs, shardOutputAttrs())
	attrs["id"] = schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the base principal."}
	attrs["pending_inline_policies"] = schema.MapAttribute{Optional: true, ElementType: types.Int64Type,
		MarkdownDescription: "Inline policies of the base principal that this configuration writes in the same apply, by name, with their size as IAM " +
			"counts it: `{ (rdsgate_bootstrap_policy.proxy.policy_name) = rdsgate_bootstrap_policy.proxy.size }`. The plan reserves them before " +
			"they exist, at these sizes rather than what IAM holds. Ignored when `reserved_inline` is set."}
	attrs["pending_managed_policy_arns"] = schema.SetAttribute{Optional: true, ElementType: types.StringType,
		MarkdownDescription: "Managed policies that this configuration attaches to the base principal in the same apply. Ignored when `reserved_managed` is set."}
	resp.Schema = schema.Schema{
		MarkdownDescription: "The `rds-db:connect` permissions of a set of databases, packed into size-aware policy shards: the base " +
			"principal's inline policy, then its managed policies, then shard roles the proxy reaches by role chaining, each " +
			"document within IAM's quotas. The plan shows every document.\n\n" +
			"Changes are incremental: the plan in effect is kept in the resource's private state, and each database stays in " +
			"the document that holds it unless it must move. Apply orders its writes from what IAM holds, so that after every " +
			"write each database user allowed before and after is still allowed: access never lapses mid-apply. Everything created carries the " +
			"`rdsgate:managed` tag; nothing without it is changed or deleted.\n\n" +
			"The base principal's other policies share its quotas. At every plan the provider reads them from IAM and reserves " +
			"their inline characters and managed policy slots (`reserved_inline`, `reserved_managed` show what it reserved); " +
			"policies that another resource writes in the same apply go in `pending_inline_policies` and `pending_managed_policy_arns`.\n\n" +
			"Drift is judged by meaning: a document that IAM holds reordered or reformatted shows no diff, one that was " +
			"widened or narrowed by hand does, and `terraform plan -detailed-exitcode` exits 2.",
		Attributes: attrs,
	}
}

func (r *policyShardsResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (r *policyShardsResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var in shardInputs
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("databases"), &in.Databases)...)
	for name, dst := range map[string]*types.String{"base_role": &in.BaseRole, "user": &in.User, "path": &in.Path, "account_id": &in.AccountID,
		"shard_role_prefix": &in.ShardRolePrefix, "external_id": &in.ExternalID} {
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(name), dst)...)
	}
	for name, dst := range map[string]*types.Int64{"max_shard_roles": &in.MaxShardRoles, "max_managed": &in.MaxManaged,
		"reserved_inline": &in.ReservedInline, "reserved_managed": &in.ReservedManaged} {
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(name), dst)...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	// Defaults are not applied to the configuration; use them here.
	if in.Path.IsNull() {
		in.Path = types.StringValue("/")
	}
	if in.MaxShardRoles.IsNull() {
		in.MaxShardRoles = types.Int64Value(10)
	}
	if in.MaxManaged.IsNull() {
		in.MaxManaged = types.Int64Value(10)
	}
	for _, v := range []*types.Int64{&in.ReservedInline, &in.ReservedManaged} {
		if v.IsNull() {
			*v = types.Int64Value(0)
		}
	}
	if in.BaseRole.IsNull() && in.User.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("base_role"), "Missing principal", "name the proxy's principal with base_role (a role name or ARN) or user")
		return
	}
	pi, known := in.planInput(ctx, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	if pi.Target.AccountID == "" && len(pi.Inventory.Databases) == 0 {
		return // the account comes from the caller at plan time
	}
	if _, err := policies.NewPlan(pi); err != nil {
		addPlanError(&resp.Diagnostics, err)
	}
}

// automaticReservation reports whether the configuration leaves a
// reservation to the provider.
func automaticReservation(ctx context.Context, config tfsdk.Config, diags *diagsT) bool {
	var inline, managed types.Int64
	diags.Append(config.GetAttribute(ctx, path.Root("reserved_inline"), &inline)...)
	diags.Append(config.GetAttribute(ctx, path.Root("reserved_managed"), &managed)...)
	return inline.IsNull() || managed.IsNull()
}

// reserve fills in the reservations the configuration leaves out: what the
// base principal's other policies take of its quotas, read from IAM, with
// the pending policies this apply writes counted at their new sizes. A
// principal that does not exist yet has nothing but the pending ones.
func (r *policyShardsResource) reserve(ctx context.Context, config tfsdk.Config, m *shardsModel, diags *diagsT) {
	var inline, managed types.Int64
	diags.Append(config.GetAttribute(ctx, path.Root("reserved_inline"), &inline)...)
	diags.Append(config.GetAttribute(ctx, path.Root("reserved_managed"), &managed)...)
	if diags.HasError() || (!inline.IsNull() && !managed.IsNull()) {
		return
	}
	if m.BaseRole.IsUnknown() || m.User.IsUnknown() || m.PendingInline.IsUnknown() || m.PendingManaged.IsUnknown() {
		if inline.IsNull() {
			m.ReservedInline = types.Int64Unknown()
		}
		if managed.IsNull() {
			m.ReservedManaged = types.Int64Unknown()
		}
		return
	}
	kind, name := policies.PrincipalRole, m.BaseRole.ValueString()
	if name == "" {
		kind, name = policies.PrincipalUser, m.User.ValueString()
	}
	if n, err := policies.ParseIAMARN(name); err == nil && strings.HasPrefix(name, "arn:") {
		name = n.Name
	}
	if name == "" {
		return // planInput says what is missing
	}
	others, err := bootstrap.ReadOthers(ctx, r.p.clients.IAM, kind, name)
	if err != nil {
		diags.AddAttributeError(path.Root("reserved_inline"), "Cannot read the other policies of "+string(kind)+" "+name,
			tfText(err)+"\n\nThe plan reserves their share of the quotas. Give the provider iam:List*Policies and iam:Get*Policy on the principal, or set reserved_inline and reserved_managed.")
		return
	}
	pendingInline := map[string]int64{}
	diags.Append(m.PendingInline.ElementsAs(ctx, &pendingInline, false)...)
	var pendingManaged []string
	diags.Append(m.PendingManaged.ElementsAs(ctx, &pendingManaged, false)...)
	if diags.HasError() {
		return
	}
	size := int64(0)
	for n, v := range others.Inline {
		if _, later := pendingInline[n]; !later {
			size += int64(v)
		}
	}
	for n, v := range pendingInline {
		if v < 0 {
			diags.AddAttributeError(path.Root("pending_inline_policies").AtMapKey(n), "Invalid size", fmt.Sprintf("%d: a policy's size is a count of characters", v))
			return
		}
		size += v
	}
	attached := map[string]bool{}
	for _, arn := range append(others.Managed, pendingManaged...) {
		attached[arn] = true
	}
	if inline.IsNull() {
		m.ReservedInline = types.Int64Value(size)
	}
	if managed.IsNull() {
		m.ReservedManaged = types.Int64Value(int64(len(attached)))
	}
}

// desired makes the plan for the inputs, with the previous plan from private
// state; nil when an input is unknown.
func (r *policyShardsResource) desired(ctx context.Context, in *shardInputs, private privateGetter, diags *diagsT) *policies.Plan {
	pi, known := in.planInput(ctx, diags)
	if !known || diags.HasError() {
		return nil
	}
	if pi.Target.AccountID == "" && len(pi.Inventory.Databases) == 0 {
		acct, err := r.p.accountID(ctx)
		if err != nil {
			diags.AddAttributeError(path.Root("account_id"), "Cannot tell the account", "with no databases the plan needs account_id: "+tfText(err))
			return nil
		}
		pi.Target.AccountID = acct
	}
	if private != nil {
		data, d := private.GetKey(ctx, privatePlan)
		diags.Append(d...)
		if len(data) > 0 {
			prev, err := policies.ReadPlan(data, "the previous plan in state")
			if err != nil {
				diags.AddWarning("Previous plan unreadable", tfText(err)+"; planning from scratch (more documents may change)")
			} else if prev.Base.Name == pi.Target.Name && prev.Base.Kind == pi.Target.Kind {
				pi.Previous = prev
			}
		}
	}
	plan, err := policies.NewPlan(pi)
	if err != nil {
		addPlanError(diags, err)
		return nil
	}
	return plan
}

func (r *policyShardsResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.p == nil {
		return
	}
	var m shardsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var private privateGetter
	if !req.State.Raw.IsNull() {
		private = req.Private
	}
	r.reserve(ctx, req.Config, &m, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	plan := r.desired(ctx, &m.shardInputs, private, &resp.Diagnostics)
	if plan == nil {
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
		return
	}
	out := outputs(plan)
	if !req.State.Raw.IsNull() {
		var prior shardsModel
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
		// A document IAM holds in another form with the same meaning (after
		// an import, say) is not a change.
		out.Documents = keepEquivalentDocs(ctx, prior.Documents, out.Documents, &resp.Diagnostics)
		if prior.Documents.Equal(out.Documents) && prior.DatabaseRoles.Equal(out.DatabaseRoles) {
			// Nothing to write: keep the outputs as they are, and stats.moved,
			// which describes the last change, not this empty one. (After an
			// import the other stats are counted now: IAM does not hold them.)
			out.Stats = keepMoved(out.Stats, prior.Stats)
			prior.shardOutputs.Stats = out.Stats
			out = prior.shardOutputs
		}
	}
	m.shardOutputs = out
	m.ID = out.BaseARN
	m.AccountID = types.StringValue(plan.AccountID)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
}

func (r *policyShardsResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m shardsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan := r.desired(ctx, &m.shardInputs, nil, &resp.Diagnostics)
	if plan == nil {
		stillUnknown(&resp.Diagnostics)
		return
	}
	r.write(ctx, &m, plan, automaticReservation(ctx, req.Config, &resp.Diagnostics), &resp.Diagnostics, resp.Private.SetKey)
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

func (r *policyShardsResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior shardsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan := r.desired(ctx, &m.shardInputs, req.Private, &resp.Diagnostics)
	if plan == nil {
		stillUnknown(&resp.Diagnostics)
		return
	}
	planned := m.Documents
	r.write(ctx, &m, plan, automaticReservation(ctx, req.Config, &resp.Diagnostics), &resp.Diagnostics, resp.Private.SetKey)
	if !resp.Diagnostics.HasError() {
		// As ModifyPlan planned it: documents as the plan wrote them when
		// they mean the same, and no moves counted when nothing changed.
		m.Documents = keepEquivalentDocs(ctx, planned, m.Documents, &resp.Diagnostics)
		if prior.Documents.Equal(m.Documents) && prior.DatabaseRoles.Equal(m.DatabaseRoles) {
			m.Stats = keepMoved(m.Stats, prior.Stats)
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	}
}

// keepEquivalentDocs is desired with each document that means the same as
// prior's under the same key written as prior has it.
func keepEquivalentDocs(ctx context.Context, prior, desired types.Map, diags *diagsT) types.Map {
	before, ok1 := mapOf(ctx, prior, diags)
	after, ok2 := mapOf(ctx, desired, diags)
	if !ok1 || !ok2 {
		return desired
	}
	for k, v := range after {
		if d, err := policies.Parse([]byte(v)); err == nil {
			after[k] = keepIfEquivalent(before[k], d)
		}
	}
	return stringMap(after)
}

// keepMoved is stats with prior's count of moved databases.
func keepMoved(stats, prior types.Object) types.Object {
	moved, ok := prior.Attributes()["moved"]
	if prior.IsNull() || prior.IsUnknown() || !ok {
		return stats
	}
	attrs := stats.Attributes()
	attrs["moved"] = moved
	return types.ObjectValueMust(statsTypes, attrs)
}

// write applies the plan in no-gap order and records it.
func (r *policyShardsResource) write(ctx context.Context, m *shardsModel, plan *policies.Plan, automatic bool, diags *diagsT,
	setPrivate func(context.Context, string, []byte) diag.Diagnostics) {
	report, err := bootstrap.ApplyPlan(ctx, r.p.clients, plan, bootstrap.ApplyOptions{})
	if re := (*bootstrap.ReservationError)(nil); errors.As(err, &re) {
		at := map[bool]string{true: "reserved_inline", false: "reserved_managed"}[re.Inline]
		diags.AddAttributeError(path.Root(at), "The base principal's other policies outgrew the reservation", reservationText(re, automatic))
		return
	}
	if err != nil {
		diags.AddError("Cannot apply the shard plan", tfText(err)+
			"\n\nWhat was written stays (grants run before revokes, so access holds); run `terraform apply` again to converge once the cause is fixed.")
		return
	}
	for _, f := range report.Foreign {
		diags.AddWarning("Left alone: not rdsgate's", f+" has rdsgate's name but not its tag")
	}
	if broken := report.BrokenChains(); len(broken) > 0 {
		var lines []string
		for _, h := range broken {
			lines = append(lines, fmt.Sprintf("%s cannot assume %s: %s (fix: %s)", h.From, h.To, strings.Join(h.Problems, "; "), strings.Join(h.Fixes, "; ")))
		}
		diags.AddWarning("The proxy cannot assume some shard roles yet",
			"The policies are in place, but the check of the role chain found:\n"+strings.Join(lines, "\n")+
				"\n\nGive the base principal sts:AssumeRole on its shard roles (rdsgate_bootstrap_policy with assume_role_arns does), then apply again.")
	}
	data, err := plan.JSON()
	if err != nil {
		diags.AddError("Cannot record the plan", tfText(err))
		return
	}
	diags.Append(setPrivate(ctx, privatePlan, data)...)
	out := outputs(plan)
	m.shardOutputs = out
	m.ID = out.BaseARN
	m.AccountID = types.StringValue(plan.AccountID)
}

func (r *policyShardsResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	// State says it exists: a NoSuchEntity right after an apply is IAM catching up.
	ctx = bootstrap.InState(ctx)
	var m shardsModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	data, d := req.Private.GetKey(ctx, privatePlan)
	resp.Diagnostics.Append(d...)
	var prev *policies.Plan
	if len(data) > 0 {
		var err error
		if prev, err = policies.ReadPlan(data, "the plan in state"); err != nil {
			resp.Diagnostics.AddError("Unreadable plan in state", tfText(err))
			return
		}
	} else {
		// Imported: the plan is what IAM holds for this principal.
		prev = r.importedTarget(ctx, &m, &resp.Diagnostics)
		if prev == nil {
			return
		}
	}
	exists, ok := r.baseExists(ctx, prev, &resp.Diagnostics)
	if !ok {
		return
	}
	if !exists {
		// The base principal is gone, and with it every inline document:
		// show that as drift rather than fail, so a plan can say so.
		resp.Diagnostics.AddWarning("Base principal missing", fmt.Sprintf("%s %s does not exist; its documents will be written again once it does", prev.Base.Kind, prev.Base.Name))
		m.Documents = stringMap(map[string]string{})
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
		return
	}
	obs, err := bootstrap.ReadState(ctx, r.p.clients.IAM, prev)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the shards from IAM", tfText(err))
		return
	}
	prior, _ := mapOf(ctx, m.Documents, &resp.Diagnostics)
	actual := map[string]string{}
	for _, pp := range obs.Plan.Principals {
		for _, p := range pp.InlinePolicies {
			k := docKey(string(pp.Kind), pp.Name, false, p.Name)
			actual[k] = keepIfEquivalent(prior[k], p.Document)
		}
		for _, p := range pp.ManagedPolicies {
			k := docKey(string(pp.Kind), pp.Name, true, p.Name)
			actual[k] = keepIfEquivalent(prior[k], p.Document)
		}
	}
	for _, o := range obs.Orphans {
		// Created but never attached (an apply stopped in between): not
		// in any plan, so the next plan shows it going away.
		actual[unattachedKey+o.Name] = docJSON(o.Document)
	}
	m.Documents = stringMap(actual)
	if len(data) == 0 {
		// Imported: settings take their defaults until the configuration
		// says otherwise.
		m.Path = types.StringValue(prev.Base.Path)
		m.ExternalID = types.StringValue(prev.Settings.ExternalID)
		prefix := prev.Settings.ShardRolePrefix
		if prefix == prev.Base.Name+"-shard-" {
			prefix = "" // the default
		}
		m.ShardRolePrefix = types.StringValue(prefix)
		m.MaxShardRoles = types.Int64Value(int64(prev.Settings.MaxShardRoles))
		m.MaxManaged = types.Int64Value(int64(prev.Settings.MaxManaged))
		// Reservations as a plan with them left out would read them.
		others, err := bootstrap.ReadOthers(ctx, r.p.clients.IAM, prev.Base.Kind, prev.Base.Name)
		if err != nil {
			resp.Diagnostics.AddError("Cannot read the other policies of "+string(prev.Base.Kind)+" "+prev.Base.Name, tfText(err))
			return
		}
		inline := 0
		for _, v := range others.Inline {
			inline += v
		}
		m.ReservedInline = types.Int64Value(int64(inline))
		m.ReservedManaged = types.Int64Value(int64(len(others.Managed)))
		out := outputs(obs.Plan)
		m.DatabaseRoles, m.ShardRoleARNs, m.Stats, m.BaseARN = out.DatabaseRoles, out.ShardRoleARNs, out.Stats, out.BaseARN
		m.ID, m.AccountID = out.BaseARN, types.StringValue(obs.Plan.AccountID)
		if j, err := obs.Plan.JSON(); err == nil {
			resp.Diagnostics.Append(resp.Private.SetKey(ctx, privatePlan, j)...)
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// importedTarget is the plan of an imported resource before IAM is read: its
// principal, settings and account, no databases.
func (r *policyShardsResource) importedTarget(ctx context.Context, m *shardsModel, diags *diagsT) *policies.Plan {
	in := m.shardInputs
	in.Databases = types.ListValueMust(in.Databases.ElementType(ctx), nil)
	defaults := map[*types.Int64]int64{&in.MaxShardRoles: 10, &in.MaxManaged: 10, &in.ReservedInline: 0, &in.ReservedManaged: 0}
	for v, d := range defaults {
		if v.IsNull() {
			*v = types.Int64Value(d)
		}
	}
	for _, v := range []*types.String{&in.Path, &in.ShardRolePrefix, &in.ExternalID, &in.AccountID} {
		if v.IsNull() {
			*v = types.StringValue("")
		}
	}
	if in.Path.ValueString() == "" {
		in.Path = types.StringValue("/")
	}
	return r.desired(ctx, &in, nil, diags)
}

func (r *policyShardsResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m shardsModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	data, d := req.Private.GetKey(ctx, privatePlan)
	resp.Diagnostics.Append(d...)
	prev, err := policies.ReadPlan(data, "the plan in state")
	if err != nil {
		resp.Diagnostics.AddError("Unreadable plan in state", tfText(err))
		return
	}
	q := policies.DefaultQuotas()
	q.AttachedPoliciesPerRole = prev.Settings.MaxManaged
	q.AttachedPoliciesPerUser = min(20, prev.Settings.MaxManaged)
	empty, err := policies.NewPlan(policies.PlanInput{Inventory: &policies.Inventory{}, Quotas: q, Previous: prev,
		Target: policies.Target{Kind: prev.Base.Kind, Name: prev.Base.Name, Path: prev.Base.Path, AccountID: prev.AccountID,
			MaxShardRoles: prev.Settings.MaxShardRoles, ShardRolePrefix: prev.Settings.ShardRolePrefix, ExternalID: prev.Settings.ExternalID,
			ReservedInline: prev.Settings.ReservedInline, ReservedManaged: prev.Settings.ReservedManaged}})
	if err != nil {
		resp.Diagnostics.AddError("Cannot plan the removal", tfText(err))
		return
	}
	exists, ok := r.baseExists(ctx, prev, &resp.Diagnostics)
	if !ok {
		return
	}
	if !exists {
		resp.Diagnostics.AddWarning("Base principal already gone", "its inline documents went with it; shard roles left under "+prev.Settings.ShardRolePath+" are removed only while it exists")
		return
	}
	if _, err := bootstrap.ApplyPlan(ctx, r.p.clients, empty, bootstrap.ApplyOptions{}); err != nil {
		resp.Diagnostics.AddError("Cannot remove the shards", tfText(err)+"\n\nRun `terraform destroy` again to finish; what is left is tagged rdsgate:managed.")
	}
}

func (r *policyShardsResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	id := req.ID
	kind, name := "", ""
	if strings.HasPrefix(id, "arn:") {
		n, err := policies.ParseIAMARN(id)
		if err != nil || (n.Type != "role" && n.Type != "user") {
			resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q is not a role or user ARN", id))
			return
		}
		kind, name = n.Type, id
	} else {
		var ok bool
		kind, name, ok = strings.Cut(id, "/")
		if !ok || (kind != "role" && kind != "user") || name == "" {
			resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q: import rdsgate_policy_shards as role/NAME, user/NAME or the principal's ARN", id))
			return
		}
	}
	attr := map[string]string{"role": "base_role", "user": "user"}[kind]
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(attr), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), id)...)
}

// stillUnknown reports inputs that were still unknown at apply, where
// Terraform promises they are known; it never stays silent.
func stillUnknown(diags *diagsT) {
	if !diags.HasError() {
		diags.AddError("Inputs unknown at apply", "some input of rdsgate_policy_shards was still unknown when Terraform applied it; this is a bug in the rdsgate provider")
	}
}

// baseExists says whether a plan's base principal is in IAM; ok is false,
// with the error in diags, when IAM could not be read.
func (r *policyShardsResource) baseExists(ctx context.Context, p *policies.Plan, diags *diagsT) (exists, ok bool) {
	base, err := bootstrap.ReadPrincipal(ctx, r.p.clients.IAM, p.Base.Kind, p.Base.Name)
	if err != nil {
		diags.AddError("Cannot read "+string(p.Base.Kind)+" "+p.Base.Name, tfText(err))
		return false, false
	}
	return base != nil, true
}
