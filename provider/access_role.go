package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func newAccessRoleResource() resource.Resource { return &accessRoleResource{} }

type accessRoleResource struct{ p *providerData }

type accessRoleModel struct {
	ID                  types.String `tfsdk:"id"`
	Name                types.String `tfsdk:"name"`
	Path                types.String `tfsdk:"path"`
	Description         types.String `tfsdk:"description"`
	TrustedRoleARNs     types.Set    `tfsdk:"trusted_role_arns"`
	TrustedServices     types.Set    `tfsdk:"trusted_services"`
	ExternalID          types.String `tfsdk:"external_id"`
	MaxSessionDuration  types.Int64  `tfsdk:"max_session_duration"`
	PermissionsBoundary types.String `tfsdk:"permissions_boundary"`
	Tags                types.Map    `tfsdk:"tags"`
	TagsAll             types.Map    `tfsdk:"tags_all"`
	ARN                 types.String `tfsdk:"arn"`
	UniqueID            types.String `tfsdk:"unique_id"`
	TrustPolicy         types.String `tfsdk:"trust_policy"`
}

func (r *accessRoleResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_access_role"
}

func (r *accessRoleResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "An IAM role rdsgate owns: the proxy's base role, or a role a shard plan does not make for itself " +
			"(one per team, say). The role carries the `rdsgate:managed` tag; an existing role without it is never taken over " +
			"(use `rdsgate_role_trust` to add trust to a role you own elsewhere).\n\n" +
			"Drift is judged by meaning: a trust policy that was only reordered or reformatted shows no diff, while a widened " +
			"or narrowed one does, in `trust_policy` and in the attributes it came from.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, MarkdownDescription: "The role's name.",
				PlanModifiers: keptFromState},
			"name": schema.StringAttribute{Required: true, MarkdownDescription: "Role name (up to 64 of `A-Za-z0-9+=,.@_-`).",
				PlanModifiers: replaces},
			"path": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("/"),
				MarkdownDescription: "Role path, such as `/rdsgate/` (default `/`). Changing it replaces the role.",
				PlanModifiers:       replaces},
			"description": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""),
				MarkdownDescription: "Role description."},
			"trusted_role_arns": schema.SetAttribute{Optional: true, ElementType: types.StringType,
				MarkdownDescription: "Role or user ARNs (or `arn:aws:iam::ACCOUNT:root`) that may assume the role: for a shard role, the proxy's base role."},
			"trusted_services": schema.SetAttribute{Optional: true, ElementType: types.StringType,
				MarkdownDescription: "Service principals that may assume the role, such as `ec2.amazonaws.com` or `ecs-tasks.amazonaws.com` for the proxy's own role."},
			"external_id": schema.StringAttribute{Optional: true,
				MarkdownDescription: "External id callers in `trusted_role_arns` must give (2 to 1,224 characters)."},
			"max_session_duration": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(3600),
				MarkdownDescription: "Longest session in seconds, 3600 to 43200 (default 3600). A role reached by role chaining gets at most an hour whatever this says."},
			"permissions_boundary": schema.StringAttribute{Optional: true,
				MarkdownDescription: "ARN of a managed policy that caps the role's permissions."},
			"tags": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				MarkdownDescription: "Tags of the role; keys starting with `rdsgate:` are reserved."},
			"tags_all": schema.MapAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "Tags including the provider's `default_tags`."},
			"arn":       schema.StringAttribute{Computed: true, MarkdownDescription: "The role's ARN.", PlanModifiers: keptFromState},
			"unique_id": schema.StringAttribute{Computed: true, MarkdownDescription: "The role's unique id (`AROA...`).", PlanModifiers: keptFromState},
			"trust_policy": schema.StringAttribute{Computed: true,
				MarkdownDescription: "The trust policy in canonical JSON, as the role should hold it; after a refresh, as it holds it when the two differ in meaning."},
		},
	}
}

func (r *accessRoleResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

// spec builds the role spec; ok is false while some input is unknown.
func (m *accessRoleModel) spec(ctx context.Context, diags *diagsT, defaults map[string]string) (bootstrap.RoleSpec, bool) {
	arns, ok1 := stringsOf(ctx, m.TrustedRoleARNs, diags)
	services, ok2 := stringsOf(ctx, m.TrustedServices, diags)
	tags, ok3 := mapOf(ctx, m.Tags, diags)
	known := ok1 && ok2 && ok3 && !m.Name.IsUnknown() && !m.Path.IsUnknown() && !m.ExternalID.IsUnknown() &&
		!m.PermissionsBoundary.IsUnknown() && !m.MaxSessionDuration.IsUnknown() && !m.Description.IsUnknown()
	return bootstrap.RoleSpec{
		Name: m.Name.ValueString(), Path: m.Path.ValueString(), Description: m.Description.ValueString(),
		Trust:              policies.TrustSpec{RoleARNs: arns, Services: services, ExternalID: m.ExternalID.ValueString()},
		MaxSessionDuration: int(m.MaxSessionDuration.ValueInt64()), PermissionsBoundary: m.PermissionsBoundary.ValueString(),
		Tags: mergeTags(defaults, tags),
	}, known
}

func (r *accessRoleResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m accessRoleModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, known := m.spec(ctx, &resp.Diagnostics, nil)
	if !known {
		return
	}
	if spec.MaxSessionDuration == 0 {
		spec.MaxSessionDuration = 3600
	}
	if err := spec.Validate(); err != nil {
		addError(&resp.Diagnostics, "Invalid rdsgate_access_role", err)
	}
}

func (r *accessRoleResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.p == nil {
		return
	}
	var m accessRoleModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, known := m.spec(ctx, &resp.Diagnostics, r.p.defaultTags)
	if !known {
		return
	}
	m.TagsAll = stringMap(spec.Tags)
	m.TrustPolicy = types.StringValue(keepIfEquivalent(priorString(ctx, req.State, "trust_policy", &resp.Diagnostics), spec.Trust.Document()))
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
}

func (r *accessRoleResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *accessRoleModel) { r.apply(ctx, m, &resp.Diagnostics) })
}

func (r *accessRoleResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *accessRoleModel) { r.apply(ctx, m, &resp.Diagnostics) })
}

func (r *accessRoleResource) apply(ctx context.Context, m *accessRoleModel, diags *diagsT) {
	spec, _ := m.spec(ctx, diags, r.p.defaultTags)
	st, err := bootstrap.EnsureRole(ctx, r.p.clients.IAM, spec)
	if err == nil && st == nil {
		err = fmt.Errorf("IAM does not show the role yet; it is eventually consistent, so run terraform apply again in a minute")
	}
	if err != nil {
		addError(diags, fmt.Sprintf("Cannot create or update role %s", spec.Name), err)
		return
	}
	m.ID = types.StringValue(st.Name)
	m.ARN = types.StringValue(st.ARN)
	m.UniqueID = types.StringValue(st.UniqueID)
	m.TagsAll = stringMap(spec.Tags)
	m.TrustPolicy = types.StringValue(keepIfEquivalent(m.TrustPolicy.ValueString(), spec.Trust.Document()))
}

func (r *accessRoleResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	// State says it exists: a NoSuchEntity right after an apply is IAM catching up.
	ctx = bootstrap.InState(ctx)
	var m accessRoleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	st, err := bootstrap.ReadRole(ctx, r.p.clients.IAM, m.Name.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read role "+m.Name.ValueString(), tfText(err))
		return
	}
	if st == nil {
		resp.State.RemoveResource(ctx)
		return
	}
	if !st.Managed {
		resp.Diagnostics.AddError("Role "+st.Name+" is not rdsgate's",
			"The role exists without the rdsgate:managed tag, so rdsgate will not manage it. If rdsgate made it, tag it rdsgate:managed=true; otherwise remove it from the state with `terraform state rm` and use rdsgate_role_trust.")
		return
	}
	m.ID, m.Name, m.Path = types.StringValue(st.Name), types.StringValue(st.Name), types.StringValue(st.Path)
	m.ARN, m.UniqueID = types.StringValue(st.ARN), types.StringValue(st.UniqueID)
	m.Description = types.StringValue(st.Description)
	m.MaxSessionDuration = types.Int64Value(int64(st.MaxSessionDuration))
	boundary := st.PermissionsBoundary
	if m.PermissionsBoundary.IsNull() && policies.IsBootstrapBoundary(boundary, st.Name) {
		boundary = "" // rdsgate_bootstrap_policy's to manage
	}
	m.PermissionsBoundary = optionalString(boundary, m.PermissionsBoundary)
	m.TagsAll = stringMap(st.Tags)
	// tags holds the keys the configuration gave (or, after import, every
	// key that is not a default tag), with IAM's values.
	imported := m.TrustPolicy.IsNull() // only import leaves it unset
	prior, _ := mapOf(ctx, m.Tags, &resp.Diagnostics)
	own := map[string]string{}
	for k, v := range st.Tags {
		_, mine := prior[k]
		_, isDefault := r.p.defaultTags[k]
		if mine || (imported && !isDefault) {
			own[k] = v
		}
	}
	if len(own) > 0 || !m.Tags.IsNull() {
		m.Tags = stringMap(own)
	}
	if spec, ok := policies.TrustSpecOf(st.Trust); ok {
		m.TrustedRoleARNs = setOrNull(spec.RoleARNs, m.TrustedRoleARNs)
		m.TrustedServices = setOrNull(spec.Services, m.TrustedServices)
		m.ExternalID = optionalString(spec.ExternalID, m.ExternalID)
	}
	m.TrustPolicy = types.StringValue(keepIfEquivalent(m.TrustPolicy.ValueString(), st.Trust))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *accessRoleResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m accessRoleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := bootstrap.DeleteRole(ctx, r.p.clients.IAM, m.Name.ValueString()); err != nil {
		resp.Diagnostics.AddError("Cannot delete role "+m.Name.ValueString(), tfText(err))
	}
}

func (r *accessRoleResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

// optionalString keeps an optional attribute null when AWS holds the empty
// value and the configuration did not set it.
func optionalString(v string, prior types.String) types.String {
	if v == "" && prior.IsNull() {
		return prior
	}
	return types.StringValue(v)
}

func setOrNull(items []string, prior types.Set) types.Set {
	if len(items) == 0 && prior.IsNull() {
		return prior
	}
	return stringSet(items)
}
