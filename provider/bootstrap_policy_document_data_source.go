package provider

import (
	"context"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/policies"
)

// The rdsgate_bootstrap_policy_document data source.

func newBootstrapPolicyDocumentDataSource() datasource.DataSource { return &bootstrapDocDataSource{} }

type bootstrapDocDataSource struct{}

type bootstrapDocModel struct {
	bootstrapInputs
	PrincipalARN types.String `tfsdk:"principal_arn"`
	JSON         types.String `tfsdk:"json"`
	BoundaryARN  types.String `tfsdk:"boundary_arn"`
	BoundaryJSON types.String `tfsdk:"boundary_json"`
	Explanation  types.String `tfsdk:"explanation"`
}

func (d *bootstrapDocDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_bootstrap_policy_document"
}

func (d *bootstrapDocDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The proxy's own permissions, as `rdsgate bootstrap print-iam` prints them, without any AWS call: " +
			"for a review, or to attach with another tool.",
		Attributes: map[string]schema.Attribute{
			"types":             schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "What the proxy serves: `rds`, `rds-proxy`, `redshift`, `redshift-serverless` (default `[\"rds\"]`)."},
			"role":              schema.StringAttribute{Optional: true, MarkdownDescription: "Name of the proxy's role."},
			"user":              schema.StringAttribute{Optional: true, MarkdownDescription: "Name of the proxy's IAM user."},
			"path":              schema.StringAttribute{Optional: true, MarkdownDescription: "Path of the principal (default `/`)."},
			"account_id":        schema.StringAttribute{Optional: true, MarkdownDescription: "Account the ARNs name (default `*`, which IAM confines to the policy's own account)."},
			"partition":         schema.StringAttribute{Optional: true, MarkdownDescription: "`aws` (default), `aws-cn` or `aws-us-gov`."},
			"assume_role_arns":  schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Roles the proxy may assume."},
			"allow_shard_roles": schema.BoolAttribute{Optional: true, MarkdownDescription: "Include the proxy's shard roles (default `true`; needs `account_id`)."},
			"manual":            schema.BoolAttribute{Optional: true, MarkdownDescription: "Leave out every IAM write permission."},
			"principal_arn":     schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the principal."},
			"json":              schema.StringAttribute{Computed: true, MarkdownDescription: "The identity policy, canonical JSON."},
			"boundary_arn":      schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the permissions boundary (automatic mode)."},
			"boundary_json":     schema.StringAttribute{Computed: true, MarkdownDescription: "The permissions boundary, canonical JSON."},
			"explanation":       schema.StringAttribute{Computed: true, MarkdownDescription: "Why each statement is there, one line per statement."},
		},
	}
}

func (in *bootstrapInputs) defaults() {
	if in.Types.IsNull() {
		in.Types = stringList([]string{policies.TypeRDS})
	}
	if in.AllowShardRoles.IsNull() {
		in.AllowShardRoles = types.BoolValue(true)
	}
	if in.Manual.IsNull() {
		in.Manual = types.BoolValue(false)
	}
}

func (d *bootstrapDocDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m bootstrapDocModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.defaults()
	o, _ := m.options(ctx, "", &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	bp, err := policies.NewBootstrapPolicy(o)
	if err != nil {
		bootstrapError(&resp.Diagnostics, err)
		return
	}
	m.PrincipalARN = types.StringValue(bp.PrincipalARN)
	m.JSON = types.StringValue(docJSON(bp.Policy))
	m.BoundaryARN = types.StringValue(bp.BoundaryARN)
	m.BoundaryJSON = types.StringValue(docJSON(bp.Boundary))
	var lines []string
	for _, e := range bp.Explanations {
		line := e.Sid + ": " + e.Why
		if e.Note != "" {
			line += " (" + e.Note + ")"
		}
		lines = append(lines, line)
	}
	m.Explanation = types.StringValue(strings.Join(lines, "\n"))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
