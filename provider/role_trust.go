package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func newRoleTrustResource() resource.Resource { return &roleTrustResource{} }

type roleTrustResource struct{ p *providerData }

type roleTrustModel struct {
	ID              types.String `tfsdk:"id"`
	RoleName        types.String `tfsdk:"role_name"`
	Sid             types.String `tfsdk:"sid"`
	TrustedRoleARNs types.Set    `tfsdk:"trusted_role_arns"`
	ExternalID      types.String `tfsdk:"external_id"`
	RoleARN         types.String `tfsdk:"role_arn"`
	Statement       types.String `tfsdk:"statement"`
}

func (r *roleTrustResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role_trust"
}

func (r *roleTrustResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Trust added to an existing role that rdsgate does not own, so the proxy (or another role) may assume " +
			"it: for example a role in another account that holds `rds-db:connect` for that account's databases. rdsgate " +
			"writes one statement under its own `sid` and leaves the role's other statements as they are; destroying the " +
			"resource takes only that statement out.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, MarkdownDescription: "`ROLE_NAME/SID`.",
				PlanModifiers: keptFromState},
			"role_name": schema.StringAttribute{Required: true, MarkdownDescription: "Name of the existing role to add trust to.",
				PlanModifiers: replaces},
			"sid": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("RdsgateTrust"),
				MarkdownDescription: "Statement id of rdsgate's statement (letters and digits; default `RdsgateTrust`).",
				PlanModifiers:       replaces},
			"trusted_role_arns": schema.SetAttribute{Required: true, ElementType: types.StringType,
				MarkdownDescription: "Role or user ARNs that may assume the role, typically the proxy's base role."},
			"external_id": schema.StringAttribute{Optional: true, MarkdownDescription: "External id the callers must give."},
			"role_arn":    schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the role.", PlanModifiers: keptFromState},
			"statement": schema.StringAttribute{Computed: true,
				MarkdownDescription: "rdsgate's statement as a policy document in canonical JSON; after a refresh, what the role holds under the sid when it means something else (empty when it was removed)."},
		},
	}
}

func (r *roleTrustResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (m *roleTrustModel) spec(ctx context.Context, diags *diagsT) (policies.TrustSpec, bool) {
	arns, ok := stringsOf(ctx, m.TrustedRoleARNs, diags)
	known := ok && !m.Sid.IsUnknown() && !m.ExternalID.IsUnknown() && !m.RoleName.IsUnknown()
	return policies.TrustSpec{Sid: m.Sid.ValueString(), RoleARNs: arns, ExternalID: m.ExternalID.ValueString()}, known
}

func statementDoc(stmts []policies.Statement) *policies.Document {
	if len(stmts) == 0 {
		return nil
	}
	return &policies.Document{Version: policies.PolicyVersion, Statements: stmts}
}

func (r *roleTrustResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m roleTrustModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, known := m.spec(ctx, &resp.Diagnostics)
	if !known {
		return
	}
	if m.Sid.IsNull() {
		spec.Sid = "RdsgateTrust"
	}
	if len(spec.RoleARNs) == 0 {
		resp.Diagnostics.AddAttributeError(path.Root("trusted_role_arns"), "Invalid rdsgate_role_trust", "give at least one role or user ARN")
		return
	}
	if err := spec.Validate(); err != nil {
		addError(&resp.Diagnostics, "Invalid rdsgate_role_trust", err)
	}
	if name := m.RoleName.ValueString(); !m.RoleName.IsUnknown() {
		if err := policies.ValidateIAMName("role", name, 64); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("role_name"), "Invalid rdsgate_role_trust", tfText(err))
		}
	}
}

func (r *roleTrustResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var m roleTrustModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	spec, known := m.spec(ctx, &resp.Diagnostics)
	if resp.Diagnostics.HasError() || !known {
		return
	}
	m.Statement = types.StringValue(keepIfEquivalent(priorString(ctx, req.State, "statement", &resp.Diagnostics), statementDoc(spec.Statements())))
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
}

func (r *roleTrustResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *roleTrustModel) { r.put(ctx, m, &resp.Diagnostics) })
}

func (r *roleTrustResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *roleTrustModel) { r.put(ctx, m, &resp.Diagnostics) })
}

func (r *roleTrustResource) put(ctx context.Context, m *roleTrustModel, diags *diagsT) {
	spec, _ := m.spec(ctx, diags)
	role := m.RoleName.ValueString()
	if err := bootstrap.PutRoleTrust(ctx, r.p.clients.IAM, bootstrap.RoleTrust{RoleName: role, Spec: spec}); err != nil {
		addError(diags, "Cannot add trust to role "+role, err)
		return
	}
	_, arn, _, err := bootstrap.ReadRoleTrust(ctx, r.p.clients.IAM, role, spec.Sid)
	if err != nil {
		addError(diags, "Cannot read role "+role, err)
		return
	}
	m.ID = types.StringValue(role + "/" + spec.Sid)
	m.RoleARN = types.StringValue(arn)
	m.Statement = types.StringValue(keepIfEquivalent(m.Statement.ValueString(), statementDoc(spec.Statements())))
}

func (r *roleTrustResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	// State says it exists: a NoSuchEntity right after an apply is IAM catching up.
	ctx = bootstrap.InState(ctx)
	var m roleTrustModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	stmts, arn, exists, err := bootstrap.ReadRoleTrust(ctx, r.p.clients.IAM, m.RoleName.ValueString(), m.Sid.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read role "+m.RoleName.ValueString(), tfText(err))
		return
	}
	if !exists {
		resp.State.RemoveResource(ctx)
		return
	}
	m.RoleARN = types.StringValue(arn)
	m.ID = types.StringValue(m.RoleName.ValueString() + "/" + m.Sid.ValueString())
	doc := statementDoc(stmts)
	if doc != nil {
		if spec, ok := policies.TrustSpecOf(doc); ok {
			m.TrustedRoleARNs = setOrNull(spec.RoleARNs, m.TrustedRoleARNs)
			m.ExternalID = optionalString(spec.ExternalID, m.ExternalID)
		}
	}
	m.Statement = types.StringValue(keepIfEquivalent(m.Statement.ValueString(), doc))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *roleTrustResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m roleTrustModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := bootstrap.RemoveRoleTrust(ctx, r.p.clients.IAM, m.RoleName.ValueString(), m.Sid.ValueString()); err != nil {
		resp.Diagnostics.AddError("Cannot remove rdsgate's trust from role "+m.RoleName.ValueString(), tfText(err))
	}
}

func (r *roleTrustResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	role, sid, ok := strings.Cut(req.ID, "/")
	if !ok || role == "" || sid == "" {
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q: import rdsgate_role_trust as ROLE_NAME/SID, for example app-reader/RdsgateTrust", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("role_name"), role)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("sid"), sid)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}
