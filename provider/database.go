package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func newDatabaseResource() resource.Resource { return &databaseResource{} }

type databaseResource struct{ p *providerData }

type databaseModel struct {
	ID               types.String `tfsdk:"id"`
	Identifier       types.String `tfsdk:"identifier"`
	Kind             types.String `tfsdk:"kind"`
	Region           types.String `tfsdk:"region"`
	Name             types.String `tfsdk:"name"`
	DBUsers          types.List   `tfsdk:"db_users"`
	Labels           types.Map    `tfsdk:"labels"`
	Engine           types.String `tfsdk:"engine"`
	EnableIAMAuth    types.Bool   `tfsdk:"enable_iam_auth"`
	ApplyImmediately types.Bool   `tfsdk:"apply_immediately"`
	ARN              types.String `tfsdk:"arn"`
	ResourceID       types.String `tfsdk:"resource_id"`
	AccountID        types.String `tfsdk:"account_id"`
	EngineVersion    types.String `tfsdk:"engine_version"`
	Endpoint         types.String `tfsdk:"endpoint"`
	ReaderEndpoint   types.String `tfsdk:"reader_endpoint"`
	Port             types.Int64  `tfsdk:"port"`
	IAMAuthEnabled   types.Bool   `tfsdk:"iam_auth_enabled"`
}

func (r *databaseResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_database"
}

func (r *databaseResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "An RDS instance or Aurora cluster served by rdsgate. The database itself is not created here (that is " +
			"the AWS provider's job); this resource turns IAM database authentication on, checks that AWS supports it for the " +
			"engine, and reads what the shard planner and the proxy need: the resource id that `rds-db:connect` ARNs name, " +
			"the endpoint and the port. Pass these resources to `rdsgate_policy_shards.databases`.\n\n" +
			"If IAM authentication is turned off outside Terraform, the next plan shows `enable_iam_auth` changing back to `true`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, MarkdownDescription: "`REGION/KIND/IDENTIFIER`.", PlanModifiers: keptFromState},
			"identifier": schema.StringAttribute{Required: true, MarkdownDescription: "The DB instance or DB cluster identifier.",
				PlanModifiers: replaces},
			"kind": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("instance"),
				MarkdownDescription: "`instance` (RDS) or `cluster` (Aurora: IAM users are authorized on the cluster).",
				PlanModifiers:       replaces},
			"region": schema.StringAttribute{Optional: true, Computed: true,
				MarkdownDescription: "Region of the database (default: the provider's).",
				PlanModifiers:       replaces},
			"name": schema.StringAttribute{Optional: true, Computed: true,
				MarkdownDescription: "rdsgate's name for the database in plans, proxy configuration and RBAC (default: the identifier)."},
			"db_users": schema.ListAttribute{Required: true, ElementType: types.StringType,
				MarkdownDescription: "Database users the proxy may connect as (`[\"*\"]` for any). Each needs the IAM grant in the database: `rdsgate db-user-sql` prints it."},
			"labels": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				MarkdownDescription: "Labels RBAC rules select databases by (env, team, ...)."},
			"engine": schema.StringAttribute{Optional: true, Computed: true,
				MarkdownDescription: "Engine (`postgres`, `mysql`, `mariadb`, `aurora-postgresql`, `aurora-mysql`). Read from RDS; when set, RDS must agree."},
			"enable_iam_auth": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				MarkdownDescription: "Turn IAM database authentication on (default). `false` leaves the setting as it is."},
			"apply_immediately": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				MarkdownDescription: "Apply the change now rather than in the next maintenance window (default `true`; the change does not restart the database)."},
			"arn":              schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the instance or cluster.", PlanModifiers: keptFromState},
			"resource_id":      schema.StringAttribute{Computed: true, MarkdownDescription: "`DbiResourceId` (`db-...`) or `DbClusterResourceId` (`cluster-...`), as `rds-db:connect` ARNs name it.", PlanModifiers: keptFromState},
			"account_id":       schema.StringAttribute{Computed: true, MarkdownDescription: "Account that owns the database.", PlanModifiers: keptFromState},
			"engine_version":   schema.StringAttribute{Computed: true, MarkdownDescription: "Engine version."},
			"endpoint":         schema.StringAttribute{Computed: true, MarkdownDescription: "Host name of the instance, or the cluster's writer endpoint.", PlanModifiers: keptFromState},
			"reader_endpoint":  schema.StringAttribute{Computed: true, MarkdownDescription: "The cluster's reader endpoint (empty for instances).", PlanModifiers: keptFromState},
			"port":             schema.Int64Attribute{Computed: true, MarkdownDescription: "Port."},
			"iam_auth_enabled": schema.BoolAttribute{Computed: true, MarkdownDescription: "Whether RDS reports IAM database authentication on."},
		},
	}
}

func (r *databaseResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (r *databaseResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m databaseModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if k := m.Kind.ValueString(); !m.Kind.IsNull() && !m.Kind.IsUnknown() && k != "instance" && k != "cluster" {
		resp.Diagnostics.AddAttributeError(path.Root("kind"), "Invalid kind",
			fmt.Sprintf("%q: use instance for an RDS DB instance or cluster for an Aurora cluster (RDS Proxies are found by the rdsgate_databases data source)", k))
	}
	if rg := m.Region.ValueString(); rg != "" && !m.Region.IsUnknown() {
		if _, err := policies.PartitionOf(rg); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("region"), "Invalid region", tfText(err))
		}
	}
	if e := m.Engine.ValueString(); e != "" && !m.Engine.IsUnknown() && !policies.ValidEngine(policies.Engine(e)) {
		resp.Diagnostics.AddAttributeError(path.Root("engine"), "Invalid engine",
			fmt.Sprintf("%q is not an engine rdsgate serves: use postgres, mysql, mariadb, aurora-postgresql or aurora-mysql", e))
	}
	if users, ok := stringsOf(ctx, m.DBUsers, &resp.Diagnostics); ok {
		if err := policies.ValidateDBUsers(users); err != nil {
			addError(&resp.Diagnostics, "Invalid db_users", err)
		}
	}
	if n := m.Name.ValueString(); n != "" && !m.Name.IsUnknown() {
		if err := policies.ValidateDatabaseName(n); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Invalid name", tfText(err))
		}
	}
}

func (r *databaseResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.p == nil {
		return
	}
	var m databaseModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Region.IsUnknown() && r.p.clients.Config.Region != "" {
		var cfg types.String
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("region"), &cfg)...)
		if cfg.IsNull() {
			m.Region = types.StringValue(r.p.clients.Config.Region)
		}
	}
	if m.Name.IsUnknown() && !m.Identifier.IsUnknown() {
		var cfg types.String
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("name"), &cfg)...)
		if cfg.IsNull() {
			m.Name = types.StringValue(m.Identifier.ValueString())
		}
	}
	if !req.State.Raw.IsNull() {
		r.keepRead(ctx, req, &m, &resp.Diagnostics)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
}

// keepRead plans what RDS reported at the last refresh for what an update
// does not change (engine, version, port, and IAM authentication unless it
// is being turned on), rather than "known after apply": a label or a db
// user changed on one database then plans as exactly that, and
// rdsgate_policy_shards and the proxy configuration downstream show the
// exact ARNs added and removed instead of turning unknown.
func (r *databaseResource) keepRead(ctx context.Context, req resource.ModifyPlanRequest, m *databaseModel, diags *diagsT) {
	var st databaseModel
	diags.Append(req.State.Get(ctx, &st)...)
	if diags.HasError() || st.ARN.IsNull() {
		return
	}
	if m.Engine.IsUnknown() {
		m.Engine = st.Engine
	}
	if m.EngineVersion.IsUnknown() {
		m.EngineVersion = st.EngineVersion
	}
	if m.Port.IsUnknown() {
		m.Port = st.Port
	}
	if m.IAMAuthEnabled.IsUnknown() {
		switch {
		case !m.EnableIAMAuth.ValueBool() || st.IAMAuthEnabled.ValueBool():
			m.IAMAuthEnabled = st.IAMAuthEnabled
		case m.ApplyImmediately.ValueBool():
			m.IAMAuthEnabled = types.BoolValue(true) // turned on now
		}
	}
}

func (r *databaseResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *databaseModel) { r.apply(ctx, m, &resp.Diagnostics) })
}

func (r *databaseResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	upsert(ctx, req.Plan, &resp.State, &resp.Diagnostics, func(m *databaseModel) { r.apply(ctx, m, &resp.Diagnostics) })
}

func (r *databaseResource) region(m *databaseModel) string {
	if m.Region.ValueString() != "" && !m.Region.IsUnknown() {
		return m.Region.ValueString()
	}
	return r.p.clients.Config.Region
}

func (r *databaseResource) apply(ctx context.Context, m *databaseModel, diags *diagsT) {
	region := r.region(m)
	api, err := r.p.clients.RDS(region)
	if err != nil {
		diags.AddAttributeError(path.Root("region"), "No region", "set region on the resource or the provider: "+tfText(err))
		return
	}
	kind, id := policies.ResourceKind(m.Kind.ValueString()), m.Identifier.ValueString()
	info, err := bootstrap.DescribeDatabase(ctx, api, kind, id)
	if err != nil {
		diags.AddError("Cannot read "+string(kind)+" "+id, tfText(err))
		return
	}
	if info == nil {
		diags.AddAttributeError(path.Root("identifier"), "No such database",
			fmt.Sprintf("there is no DB %s %q in %s: check the identifier, kind and region (aws rds describe-db-%ss --region %s)", kind, id, region, kind, region))
		return
	}
	if info.Cluster != "" {
		diags.AddAttributeError(path.Root("kind"), "Instance belongs to a cluster",
			fmt.Sprintf("instance %s is a member of Aurora cluster %s; IAM users are authorized on the cluster: use kind = \"cluster\" and identifier = %q", id, info.Cluster, info.Cluster))
		return
	}
	if info.Unsupported != "" {
		diags.AddAttributeError(path.Root("identifier"), "IAM authentication is not supported here", info.Unsupported)
		return
	}
	if e := m.Engine.ValueString(); e != "" && !m.Engine.IsUnknown() && e != info.Engine {
		diags.AddAttributeError(path.Root("engine"), "Engine mismatch", fmt.Sprintf("the configuration says %s, but RDS says %s %s runs %s", e, kind, id, info.Engine))
		return
	}
	if m.EnableIAMAuth.ValueBool() && !info.IAMAuthEnabled {
		if _, err := bootstrap.EnableIAMAuth(ctx, api, kind, id, m.ApplyImmediately.ValueBool()); err != nil {
			diags.AddError("Cannot enable IAM authentication on "+string(kind)+" "+id, tfText(err))
			return
		}
		if info, err = bootstrap.DescribeDatabase(ctx, api, kind, id); err != nil || info == nil {
			diags.AddError("Cannot read "+string(kind)+" "+id, fmt.Sprint(err))
			return
		}
		// RDS may report the change only once it is applied; the setting
		// was asked for, so the state says what was asked.
		info.IAMAuthEnabled = info.IAMAuthEnabled || m.ApplyImmediately.ValueBool()
	}
	m.Region = types.StringValue(region)
	r.fill(m, info)
}

func (r *databaseResource) fill(m *databaseModel, info *bootstrap.DatabaseInfo) {
	m.ID = types.StringValue(m.Region.ValueString() + "/" + string(info.Kind) + "/" + info.Identifier)
	m.ARN = types.StringValue(info.ARN)
	m.ResourceID = types.StringValue(info.ResourceID)
	acct := ""
	if a, err := policies.ParseARN(info.ARN); err == nil {
		acct = a.AccountID
	}
	m.AccountID = types.StringValue(acct)
	m.Engine = types.StringValue(info.Engine)
	m.EngineVersion = types.StringValue(info.EngineVersion)
	m.Endpoint = types.StringValue(info.Endpoint)
	m.ReaderEndpoint = types.StringValue(info.ReaderEndpoint)
	m.Port = types.Int64Value(int64(info.Port))
	m.IAMAuthEnabled = types.BoolValue(info.IAMAuthEnabled)
	if m.Name.IsNull() || m.Name.IsUnknown() {
		m.Name = types.StringValue(info.Identifier)
	}
}

func (r *databaseResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m databaseModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	region := r.region(&m)
	api, err := r.p.clients.RDS(region)
	if err != nil {
		resp.Diagnostics.AddError("No region", tfText(err))
		return
	}
	info, err := bootstrap.DescribeDatabase(ctx, api, policies.ResourceKind(m.Kind.ValueString()), m.Identifier.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read "+m.Kind.ValueString()+" "+m.Identifier.ValueString(), tfText(err))
		return
	}
	if info == nil {
		resp.State.RemoveResource(ctx)
		return
	}
	m.Region = types.StringValue(region)
	imported := m.ARN.IsNull()
	r.fill(&m, info)
	if imported {
		m.EnableIAMAuth = types.BoolValue(info.IAMAuthEnabled)
		m.ApplyImmediately = types.BoolValue(true)
		if m.DBUsers.IsNull() {
			m.DBUsers = stringList([]string{})
		}
	} else if m.EnableIAMAuth.ValueBool() && !info.IAMAuthEnabled {
		// Turned off outside Terraform: the plan turns it back on.
		m.EnableIAMAuth = types.BoolValue(false)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *databaseResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {
	// The database is not rdsgate's: forgetting it leaves IAM
	// authentication on, which is harmless and what other users may rely on.
}

func (r *databaseResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	parts := strings.Split(req.ID, "/")
	var region, kind, id string
	switch len(parts) {
	case 2:
		kind, id = parts[0], parts[1]
	case 3:
		region, kind, id = parts[0], parts[1], parts[2]
	}
	if (kind != "instance" && kind != "cluster") || id == "" {
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q: import rdsgate_database as [REGION/]instance/IDENTIFIER or [REGION/]cluster/IDENTIFIER", req.ID))
		return
	}
	if region != "" {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("region"), region)...)
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("kind"), kind)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("identifier"), id)...)
}
