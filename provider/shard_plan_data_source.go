package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/policies"
)

// The rdsgate_shard_plan data source.

func newShardPlanDataSource() datasource.DataSource { return &shardPlanDataSource{} }

type shardPlanDataSource struct{ p *providerData }

type shardPlanModel struct {
	shardInputs
	shardOutputs
	Previous types.String `tfsdk:"previous_plan_json"`
	PlanJSON types.String `tfsdk:"plan_json"`
	Table    types.String `tfsdk:"table"`
}

func (d *shardPlanDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_shard_plan"
}

func (d *shardPlanDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	in := map[string]schema.Attribute{
		"base_role":         schema.StringAttribute{Optional: true, MarkdownDescription: "Name (or ARN) of the proxy's role. Give `base_role` or `user`."},
		"user":              schema.StringAttribute{Optional: true, MarkdownDescription: "Name (or ARN) of the proxy's IAM user."},
		"path":              schema.StringAttribute{Optional: true, MarkdownDescription: "Path of the base principal (default `/`)."},
		"account_id":        schema.StringAttribute{Optional: true, MarkdownDescription: "Account of the base principal (default: from the databases)."},
		"max_shard_roles":   schema.Int64Attribute{Optional: true, MarkdownDescription: "Shard roles the plan may create (default 10)."},
		"shard_role_prefix": schema.StringAttribute{Optional: true, MarkdownDescription: "Prefix of shard role names."},
		"external_id":       schema.StringAttribute{Optional: true, MarkdownDescription: "External id of the shard roles' trust."},
		"max_managed":       schema.Int64Attribute{Optional: true, MarkdownDescription: "Managed policies per principal (default 10, up to 20)."},
		"reserved_inline":   schema.Int64Attribute{Optional: true, MarkdownDescription: "Inline characters used by other policies."},
		"reserved_managed":  schema.Int64Attribute{Optional: true, MarkdownDescription: "Managed policies attached by others."},
		"databases": schema.ListNestedAttribute{Required: true, MarkdownDescription: "The databases, as `rdsgate_policy_shards` takes them.",
			NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
				"name": schema.StringAttribute{Required: true}, "identifier": schema.StringAttribute{Optional: true},
				"engine": schema.StringAttribute{Required: true}, "engine_version": schema.StringAttribute{Optional: true},
				"kind": schema.StringAttribute{Required: true}, "resource_id": schema.StringAttribute{Required: true},
				"region": schema.StringAttribute{Required: true}, "account_id": schema.StringAttribute{Required: true},
				"endpoint": schema.StringAttribute{Optional: true}, "port": schema.Int64Attribute{Optional: true},
				"db_users": schema.ListAttribute{Required: true, ElementType: types.StringType},
				"labels":   schema.MapAttribute{Optional: true, ElementType: types.StringType},
			}}},
		"previous_plan_json": schema.StringAttribute{Optional: true, MarkdownDescription: "A previous plan (JSON): databases stay where it put them."},
		"base_arn":           schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the base principal."},
		"documents":          schema.MapAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Every document, keyed `KIND/PRINCIPAL/inline|managed/POLICY`."},
		"database_roles":     schema.MapAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Principal ARN per database."},
		"shard_role_arns":    schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Shard role ARNs."},
		"stats": schema.SingleNestedAttribute{Computed: true, MarkdownDescription: "Plan statistics.", Attributes: map[string]schema.Attribute{
			"databases": schema.Int64Attribute{Computed: true}, "documents": schema.Int64Attribute{Computed: true},
			"lower_bound": schema.Int64Attribute{Computed: true}, "moved": schema.Int64Attribute{Computed: true},
			"principals": schema.Int64Attribute{Computed: true},
		}},
		"plan_json": schema.StringAttribute{Computed: true, MarkdownDescription: "The plan in the JSON form `rdsgate shards apply --plan` reads."},
		"table":     schema.StringAttribute{Computed: true, MarkdownDescription: "Principals and documents as a small table."},
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A shard plan made without writing anything (what `rdsgate shards plan` prints; the resource " +
			"`rdsgate_policy_shards` is `rdsgate shards apply`, so the names follow the CLI's plan and apply). It reads nothing from IAM: " +
			"`reserved_inline` and `reserved_managed` are 0 unless given. To review, to " +
			"feed another tool, or to check in CI that a fleet still fits.",
		Attributes: in,
	}
}

func (d *shardPlanDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (d *shardPlanDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m shardPlanModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	setDefaults := map[*types.Int64]int64{&m.MaxShardRoles: 10, &m.MaxManaged: 10, &m.ReservedInline: 0, &m.ReservedManaged: 0}
	for v, def := range setDefaults {
		if v.IsNull() {
			*v = types.Int64Value(def)
		}
	}
	if m.Path.IsNull() {
		m.Path = types.StringValue("/")
	}
	pi, known := m.planInput(ctx, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	if prev := m.Previous.ValueString(); prev != "" {
		p, err := policies.ReadPlan([]byte(prev), "previous_plan_json")
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("previous_plan_json"), "Invalid previous plan", tfText(err))
			return
		}
		pi.Previous = p
	}
	if pi.Target.AccountID == "" && len(pi.Inventory.Databases) == 0 && d.p != nil {
		acct, err := d.p.accountID(ctx)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("account_id"), "Cannot tell the account", tfText(err))
			return
		}
		pi.Target.AccountID = acct
	}
	plan, err := policies.NewPlan(pi)
	if err != nil {
		addPlanError(&resp.Diagnostics, err)
		return
	}
	m.shardOutputs = outputs(plan)
	m.AccountID = types.StringValue(plan.AccountID)
	data, err := plan.JSON()
	if err != nil {
		resp.Diagnostics.AddError("Cannot write the plan", tfText(err))
		return
	}
	m.PlanJSON = types.StringValue(string(data))
	m.Table = types.StringValue(planTable(plan))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// planTable is a short table of principals and their documents.
func planTable(p *policies.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %-8s %9s %10s\n", "PRINCIPAL", "KIND", "DOCUMENTS", "DATABASES")
	for _, pp := range p.Principals {
		kind := string(pp.Kind)
		if pp.Shard {
			kind = "shard"
		}
		fmt.Fprintf(&b, "%-40s %-8s %9d %10d\n", pp.Name, kind, len(pp.InlinePolicies)+len(pp.ManagedPolicies), len(pp.Databases))
	}
	fmt.Fprintf(&b, "%s in %s (lower bound %d), %d moved\n", policies.Count(p.Stats.Databases, "database"), policies.Count(p.Stats.Documents, "document"), p.Stats.LowerBound, p.Stats.Moved)
	return b.String()
}
