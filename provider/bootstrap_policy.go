package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

// bootstrapInputs are shared by the resource and the document data source.
type bootstrapInputs struct {
	Types           types.List   `tfsdk:"types"`
	Role            types.String `tfsdk:"role"`
	User            types.String `tfsdk:"user"`
	Path            types.String `tfsdk:"path"`
	AccountID       types.String `tfsdk:"account_id"`
	Partition       types.String `tfsdk:"partition"`
	AssumeRoleARNs  types.List   `tfsdk:"assume_role_arns"`
	AllowShardRoles types.Bool   `tfsdk:"allow_shard_roles"`
	Manual          types.Bool   `tfsdk:"manual"`
}

// options builds the bootstrap options; known is false while inputs are
// unknown. account is used when account_id is not set ("" leaves "*").
func (in *bootstrapInputs) options(ctx context.Context, account string, diags *diagsT) (policies.BootstrapOptions, bool) {
	typesList, ok1 := stringsOf(ctx, in.Types, diags)
	arns, ok2 := stringsOf(ctx, in.AssumeRoleARNs, diags)
	known := ok1 && ok2
	for _, v := range []types.String{in.Role, in.User, in.Path, in.AccountID, in.Partition} {
		known = known && !v.IsUnknown()
	}
	known = known && !in.AllowShardRoles.IsUnknown() && !in.Manual.IsUnknown()
	o := policies.BootstrapOptions{Types: typesList, Path: in.Path.ValueString(), AccountID: in.AccountID.ValueString(),
		Partition: in.Partition.ValueString(), AssumeRoleARNs: arns, Manual: in.Manual.ValueBool()}
	if o.AccountID == "" {
		o.AccountID = account
	}
	if o.Partition == "" {
		o.Partition = policies.PartitionAWS
	}
	switch {
	case in.Role.ValueString() != "" && in.User.ValueString() != "":
		diags.AddAttributeError(path.Root("user"), "Conflicting principals", "give role or user, not both")
		return o, false
	case in.User.ValueString() != "":
		o.Kind, o.Name = policies.PrincipalUser, in.User.ValueString()
	default:
		o.Kind, o.Name = policies.PrincipalRole, in.Role.ValueString()
	}
	if known && in.AllowShardRoles.ValueBool() && o.Kind == policies.PrincipalRole && o.Name != "" && o.AccountID != "" && o.AccountID != "*" {
		o.AssumeRoleARNs = append(o.AssumeRoleARNs, policies.ShardRolesARN(o.Partition, o.AccountID, o.Name))
	}
	return o, known
}

// bootstrapError points a NewBootstrapPolicy error at the attribute it is about.
func bootstrapError(diags *diagsT, err error) {
	raw, msg := err.Error(), tfText(err)
	at := path.Root("types")
	switch {
	case strings.Contains(raw, "assume-role-arn"):
		at = path.Root("assume_role_arns")
	case strings.Contains(raw, "account"):
		at = path.Root("account_id")
	case strings.Contains(raw, "partition"):
		at = path.Root("partition")
	case strings.Contains(raw, "path"):
		at = path.Root("path")
	case strings.Contains(raw, "name"):
		at = path.Root("role")
	}
	diags.AddAttributeError(at, "Invalid bootstrap policy", msg)
}

func bootstrapInputAttrs(resource bool) map[string]schema.Attribute {
	var replace []planmodifier.String
	if resource {
		replace = replaces
	}
	return map[string]schema.Attribute{
		"types": schema.ListAttribute{Optional: true, Computed: true, ElementType: types.StringType,
			Default:             listdefault.StaticValue(stringList([]string{policies.TypeRDS})),
			MarkdownDescription: "What the proxy serves: `rds`, `rds-proxy`, `redshift`, `redshift-serverless` (default `[\"rds\"]`)."},
		"role": schema.StringAttribute{Optional: true, PlanModifiers: replace,
			MarkdownDescription: "Name of the proxy's role. Give `role` or `user`."},
		"user": schema.StringAttribute{Optional: true, PlanModifiers: replace,
			MarkdownDescription: "Name of the proxy's IAM user."},
		"path": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("/"), PlanModifiers: replace,
			MarkdownDescription: "Path of the proxy's principal (default `/`)."},
		"account_id": schema.StringAttribute{Optional: true, Computed: true,
			MarkdownDescription: "Account the ARNs name (default: the caller's)."},
		"partition": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(policies.PartitionAWS),
			MarkdownDescription: "`aws`, `aws-cn` or `aws-us-gov`."},
		"assume_role_arns": schema.ListAttribute{Optional: true, ElementType: types.StringType,
			MarkdownDescription: "Roles the proxy may assume besides its shard roles (other accounts' roles, for example)."},
		"allow_shard_roles": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(true),
			MarkdownDescription: "Let the proxy assume the shard roles `rdsgate_policy_shards` makes for it (`role/rdsgate/<role>/*`; default `true`)."},
		"manual": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
			PlanModifiers:       []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
			MarkdownDescription: "Leave out every IAM write permission: an administrator (or Terraform) manages the connect policies. No permissions boundary is needed then."},
	}
}

func newBootstrapPolicyResource() resource.Resource { return &bootstrapPolicyResource{} }

type bootstrapPolicyResource struct{ p *providerData }

type bootstrapPolicyModel struct {
	ID types.String `tfsdk:"id"`
	bootstrapInputs
	PrincipalARN types.String `tfsdk:"principal_arn"`
	PolicyJSON   types.String `tfsdk:"policy_json"`
	BoundaryARN  types.String `tfsdk:"boundary_arn"`
	BoundaryJSON types.String `tfsdk:"boundary_json"`
	Size         types.Int64  `tfsdk:"size"`
	PolicyName   types.String `tfsdk:"policy_name"`
	KeepExisting types.Bool   `tfsdk:"keep_existing_permissions"`
}

func (r *bootstrapPolicyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_bootstrap_policy"
}

func (r *bootstrapPolicyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	attrs := bootstrapInputAttrs(true)
	attrs["id"] = schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the proxy's principal.",
		PlanModifiers: keptFromState}
	attrs["principal_arn"] = schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the proxy's principal."}
	attrs["policy_json"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The inline policy `rdsgate-bootstrap` in canonical JSON; after a refresh, what IAM holds when it means something else."}
	attrs["boundary_arn"] = schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the permissions boundary (automatic mode; empty in manual mode)."}
	attrs["boundary_json"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The permissions boundary in canonical JSON."}
	attrs["size"] = schema.Int64Attribute{Computed: true, MarkdownDescription: "Characters the inline policy uses of the principal's inline budget, as IAM counts them."}
	attrs["keep_existing_permissions"] = schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
		MarkdownDescription: "In automatic mode, also allow in the permissions boundary the actions of the principal's other policies (read from IAM at plan time), " +
			"so that setting the boundary takes none of them away. A boundary only caps: the proxy still cannot grant itself anything the principal " +
			"could not do before. Without it, the plan warns and lists the actions the boundary would cut."}
	attrs["policy_name"] = schema.StringAttribute{Computed: true, Default: stringdefault.StaticString(policies.BootstrapPolicyName),
		MarkdownDescription: "Name of the inline policy (`" + policies.BootstrapPolicyName + "`). With `size`, it tells `rdsgate_policy_shards` what to reserve before the policy exists: " +
			"`pending_inline_policies = { (rdsgate_bootstrap_policy.proxy.policy_name) = rdsgate_bootstrap_policy.proxy.size }`."}
	resp.Schema = schema.Schema{
		MarkdownDescription: "What `rdsgate bootstrap create-iam` does, as a resource: the proxy's own permissions on its existing " +
			"role or user. In automatic mode the proxy may write its own connect policy and nothing else: a permissions boundary " +
			"(created first, then set on the principal, then the inline policy) caps what it can grant itself.\n\n" +
			"A boundary caps everything the principal does, not only what rdsgate grants. When the principal has other policies, the plan " +
			"reads them and warns with every action the boundary would take away (AWS would answer AccessDenied to them once it is set); " +
			"`keep_existing_permissions = true` keeps them in the boundary, `manual = true` sets no boundary at all.\n\n" +
			"`rdsgate_bootstrap_policy_document` shows the same documents without writing them.",
		Attributes: attrs,
	}
}

func (r *bootstrapPolicyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (r *bootstrapPolicyResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m bootstrapPolicyModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Role.IsNull() && m.User.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("role"), "Missing principal", "the policy is attached to the proxy's principal: give role or user")
		return
	}
	o, known := m.options(ctx, "", &resp.Diagnostics)
	if !known {
		return
	}
	if _, err := policies.NewBootstrapPolicy(o); err != nil {
		bootstrapError(&resp.Diagnostics, err)
	}
}

func (r *bootstrapPolicyResource) build(ctx context.Context, m *bootstrapPolicyModel, diags *diagsT) *policies.BootstrapPolicy {
	if m.AccountID.IsUnknown() || m.AccountID.ValueString() == "" {
		acct, err := r.p.accountID(ctx)
		if err != nil {
			diags.AddAttributeError(path.Root("account_id"), "Cannot tell the account", "set account_id, or fix the credentials: "+tfText(err))
			return nil
		}
		m.AccountID = types.StringValue(acct)
	}
	o, known := m.options(ctx, "", diags)
	if !known || diags.HasError() {
		return nil
	}
	bp, err := policies.NewBootstrapPolicy(o)
	if err != nil {
		bootstrapError(diags, err)
		return nil
	}
	return bp
}

func (r *bootstrapPolicyResource) fill(m *bootstrapPolicyModel, bp *policies.BootstrapPolicy) {
	m.ID = types.StringValue(bp.PrincipalARN)
	m.PrincipalARN = types.StringValue(bp.PrincipalARN)
	m.AccountID = types.StringValue(bp.Options.AccountID)
	m.PolicyJSON = types.StringValue(docJSON(bp.Policy))
	m.BoundaryARN = types.StringValue(bp.BoundaryARN)
	m.BoundaryJSON = types.StringValue(docJSON(bp.Boundary))
	m.Size = types.Int64Value(int64(bp.Policy.Size()))
	m.PolicyName = types.StringValue(policies.BootstrapPolicyName)
}

func (r *bootstrapPolicyResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.p == nil {
		return
	}
	var m bootstrapPolicyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if bp := r.fitBoundary(ctx, &m, r.build(ctx, &m, &resp.Diagnostics), &resp.Diagnostics); bp != nil {
		r.fill(&m, bp)
		m.PolicyJSON = types.StringValue(keepIfEquivalent(priorString(ctx, req.State, "policy_json", &resp.Diagnostics), bp.Policy))
		if bp.Boundary != nil {
			m.BoundaryJSON = types.StringValue(keepIfEquivalent(priorString(ctx, req.State, "boundary_json", &resp.Diagnostics), bp.Boundary))
		}
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
	}
}

func (r *bootstrapPolicyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *bootstrapPolicyModel) { r.write(ctx, m, &resp.Diagnostics) })
}

func (r *bootstrapPolicyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *bootstrapPolicyModel) { r.write(ctx, m, &resp.Diagnostics) })
}

// fitBoundary checks the boundary against the principal's other policies
// at plan time: it warns with the actions the boundary would cut, or with
// keep_existing_permissions returns the policy whose boundary keeps them.
func (r *bootstrapPolicyResource) fitBoundary(ctx context.Context, m *bootstrapPolicyModel, bp *policies.BootstrapPolicy, diags *diagsT) *policies.BootstrapPolicy {
	if bp == nil || bp.Boundary == nil || m.KeepExisting.IsUnknown() {
		return bp
	}
	keep := m.KeepExisting.ValueBool()
	fitted, cuts, err := bootstrap.FitBoundary(ctx, r.p.clients, bp, keep)
	if err != nil {
		diags.AddError("Cannot read the other policies of "+string(bp.Options.Kind)+" "+bp.Options.Name,
			tfText(err)+"\n\nThe plan checks what the permissions boundary would take away from them.")
		return nil
	}
	if len(cuts) > 0 && !keep {
		diags.AddAttributeWarning(path.Root("keep_existing_permissions"), "The permissions boundary would cut the "+string(bp.Options.Kind)+"'s other permissions",
			fmt.Sprintf("%s %s has policies that allow actions the boundary %s does not: %s.\n\n"+
				"A permissions boundary caps everything the %s does, so once it is set AWS answers AccessDenied to these. "+
				"Set keep_existing_permissions = true to keep them in the boundary (the proxy still cannot grant itself more than the %s has now), "+
				"set manual = true to set no boundary (the proxy then cannot write its own connect policies; apply them with rdsgate_policy_shards), "+
				"or move those policies to another role.",
				bp.Options.Kind, bp.Options.Name, bp.BoundaryName, policies.DescribeCuts(cuts), bp.Options.Kind, bp.Options.Kind))
	}
	if err := fitted.Check(policies.DefaultQuotas()); err != nil {
		diags.AddAttributeError(path.Root("keep_existing_permissions"), "Permissions boundary too large", tfText(err))
		return nil
	}
	return fitted
}

func (r *bootstrapPolicyResource) write(ctx context.Context, m *bootstrapPolicyModel, diags *diagsT) {
	bp := r.build(ctx, m, diags)
	if bp == nil {
		return
	}
	if m.KeepExisting.ValueBool() && bp.Boundary != nil {
		// The boundary the plan showed, with what it kept as IAM held it
		// then: a policy changed since shows at the next plan.
		planned, err := policies.Parse([]byte(m.BoundaryJSON.ValueString()))
		if err != nil {
			diags.AddError("Unreadable planned boundary", tfText(err))
			return
		}
		bp.Boundary = planned
	}
	changes, err := bootstrap.PlanBootstrap(ctx, r.p.clients, bp)
	if err == nil {
		err = bootstrap.ApplyChanges(ctx, changes)
	}
	if err != nil {
		diags.AddError("Cannot write the bootstrap policy", tfText(err))
		return
	}
	planned, plannedBoundary := m.PolicyJSON.ValueString(), m.BoundaryJSON.ValueString()
	r.fill(m, bp)
	m.PolicyJSON = types.StringValue(keepIfEquivalent(planned, bp.Policy))
	if bp.Boundary != nil {
		m.BoundaryJSON = types.StringValue(keepIfEquivalent(plannedBoundary, bp.Boundary))
	}
}

func (r *bootstrapPolicyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	// State says it exists: a NoSuchEntity right after an apply is IAM catching up.
	ctx = bootstrap.InState(ctx)
	var m bootstrapPolicyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// After import only the principal is known; the rest takes defaults.
	if m.Path.IsNull() {
		m.Path = types.StringValue("/")
	}
	if m.Partition.IsNull() {
		m.Partition = types.StringValue(policies.PartitionAWS)
	}
	if m.Types.IsNull() {
		m.Types = stringList([]string{policies.TypeRDS})
	}
	if m.AllowShardRoles.IsNull() {
		m.AllowShardRoles = types.BoolValue(true)
	}
	if m.Manual.IsNull() {
		m.Manual = types.BoolValue(false)
	}
	if m.KeepExisting.IsNull() {
		m.KeepExisting = types.BoolValue(false)
	}
	bp := r.build(ctx, &m, &resp.Diagnostics)
	if bp == nil {
		return
	}
	st, err := bootstrap.ReadBootstrap(ctx, r.p.clients, bp)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the bootstrap policy", tfText(err))
		return
	}
	if !st.Exists || st.Policy == nil {
		resp.State.RemoveResource(ctx)
		return
	}
	imported := m.PolicyJSON.IsNull()
	if imported && st.BoundaryARN == "" {
		m.Manual = types.BoolValue(true)
		if bp = r.build(ctx, &m, &resp.Diagnostics); bp == nil {
			return
		}
	}
	prior := m.PolicyJSON.ValueString()
	r.fill(&m, bp)
	m.PolicyJSON = types.StringValue(keepIfEquivalent(prior, st.Policy))
	if bp.Boundary != nil {
		m.BoundaryARN = types.StringValue(st.BoundaryARN)
		m.BoundaryJSON = types.StringValue(keepIfEquivalent(docJSON(bp.Boundary), st.Boundary))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *bootstrapPolicyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m bootstrapPolicyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	bp := r.build(ctx, &m, &resp.Diagnostics)
	if bp == nil {
		return
	}
	if err := bootstrap.RemoveBootstrap(ctx, r.p.clients, bp); err != nil {
		resp.Diagnostics.AddError("Cannot remove the bootstrap policy", tfText(err))
	}
}

func (r *bootstrapPolicyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	kind, name, ok := strings.Cut(req.ID, "/")
	if !ok || (kind != "role" && kind != "user") || name == "" {
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q: import rdsgate_bootstrap_policy as role/NAME or user/NAME", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(kind), name)...)
}
