package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/proxyconf"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// ---- rdsgate_bootstrap_policy_document

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

// ---- rdsgate_databases

func newDatabasesDataSource() datasource.DataSource { return &databasesDataSource{} }

type databasesDataSource struct{ p *providerData }

type databasesModel struct {
	Types         types.List   `tfsdk:"types"`
	Regions       types.List   `tfsdk:"regions"`
	Tags          types.Map    `tfsdk:"tags"`
	DBUsers       types.List   `tfsdk:"db_users"`
	AssumeRoleARN types.String `tfsdk:"assume_role_arn"`
	ExternalID    types.String `tfsdk:"external_id"`
	Databases     types.List   `tfsdk:"databases"`
	Skipped       types.List   `tfsdk:"skipped"`
	InventoryJSON types.String `tfsdk:"inventory_json"`
}

var dbEntryTypes = map[string]attr.Type{
	"name": types.StringType, "identifier": types.StringType, "engine": types.StringType, "engine_version": types.StringType,
	"kind": types.StringType, "resource_id": types.StringType, "region": types.StringType, "account_id": types.StringType,
	"endpoint": types.StringType, "port": types.Int64Type, "db_users": types.ListType{ElemType: types.StringType},
	"labels": types.MapType{ElemType: types.StringType},
}

var skippedTypes = map[string]attr.Type{"name": types.StringType, "region": types.StringType, "reason": types.StringType}

func dbEntrySchema() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"name":           schema.StringAttribute{Computed: true, MarkdownDescription: "rdsgate's name (the identifier; clusters' reader endpoints get `-reader`)."},
		"identifier":     schema.StringAttribute{Computed: true, MarkdownDescription: "AWS identifier."},
		"engine":         schema.StringAttribute{Computed: true, MarkdownDescription: "Engine."},
		"engine_version": schema.StringAttribute{Computed: true, MarkdownDescription: "Engine version."},
		"kind":           schema.StringAttribute{Computed: true, MarkdownDescription: "`instance`, `cluster` or `proxy`."},
		"resource_id":    schema.StringAttribute{Computed: true, MarkdownDescription: "Resource id in `rds-db:connect` ARNs."},
		"region":         schema.StringAttribute{Computed: true, MarkdownDescription: "Region."},
		"account_id":     schema.StringAttribute{Computed: true, MarkdownDescription: "Account."},
		"endpoint":       schema.StringAttribute{Computed: true, MarkdownDescription: "Host name."},
		"port":           schema.Int64Attribute{Computed: true, MarkdownDescription: "Port."},
		"db_users":       schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Users from the `rdsgate:db-users` tag, or `db_users`."},
		"labels":         schema.MapAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "account-id, region, engine, engine-version, endpoint-type, status, vpc-id and the tags."},
	}
}

func (d *databasesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_databases"
}

func (d *databasesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Databases found in RDS, as `rdsgate discover` finds them: instances, Aurora clusters (writer and " +
			"reader endpoints) and RDS Proxies with IAM authentication on, filtered by tags, ready for `rdsgate_policy_shards`. " +
			"What rdsgate cannot serve is listed in `skipped` with the reason and the fix.",
		Attributes: map[string]schema.Attribute{
			"types":           schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "`rds`, `aurora`, `rds-proxy` (default all three)."},
			"regions":         schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Regions to look in (default: the provider's)."},
			"tags":            schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Only databases with all these tags (`*` matches any value)."},
			"db_users":        schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Users for databases without an `rdsgate:db-users` tag."},
			"assume_role_arn": schema.StringAttribute{Optional: true, MarkdownDescription: "Discover in another account through this role."},
			"external_id":     schema.StringAttribute{Optional: true, MarkdownDescription: "External id for `assume_role_arn`."},
			"databases": schema.ListNestedAttribute{Computed: true, MarkdownDescription: "The databases found.",
				NestedObject: schema.NestedAttributeObject{Attributes: dbEntrySchema()}},
			"skipped": schema.ListNestedAttribute{Computed: true, MarkdownDescription: "Databases found that rdsgate cannot serve, and why.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":   schema.StringAttribute{Computed: true, MarkdownDescription: "Identifier."},
					"region": schema.StringAttribute{Computed: true, MarkdownDescription: "Region."},
					"reason": schema.StringAttribute{Computed: true, MarkdownDescription: "Why, and what to do."},
				}}},
			"inventory_json": schema.StringAttribute{Computed: true, MarkdownDescription: "The inventory file `rdsgate shards plan --inventory` reads."},
		},
	}
}

func (d *databasesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.p = configured(req.ProviderData, resp.Diagnostics.AddError)
}

func (d *databasesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m databasesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	kinds, _ := stringsOf(ctx, m.Types, &resp.Diagnostics)
	regions, _ := stringsOf(ctx, m.Regions, &resp.Diagnostics)
	users, _ := stringsOf(ctx, m.DBUsers, &resp.Diagnostics)
	tags, _ := mapOf(ctx, m.Tags, &resp.Diagnostics)
	if len(regions) == 0 {
		regions = []string{d.p.clients.Config.Region}
	}
	c := d.p.clients
	if arn := m.AssumeRoleARN.ValueString(); arn != "" {
		var err error
		if c, err = c.AssumeRole(ctx, arn, m.ExternalID.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("assume_role_arn"), "Cannot assume the discovery role", tfText(err))
			return
		}
	}
	acct, _, err := bootstrap.CallerAccount(ctx, c)
	if err != nil {
		resp.Diagnostics.AddError("Cannot tell the account", tfText(err))
		return
	}
	inv, err := bootstrap.Discover(ctx, c, bootstrap.DiscoverOptions{Types: kinds, Regions: regions, Tags: tags, DBUsers: users, AccountID: acct})
	if err != nil {
		addError(&resp.Diagnostics, "Discovery failed", err)
		return
	}
	var dbs, skipped []attr.Value
	for _, db := range inv.Databases {
		dbs = append(dbs, dbEntryValue(db))
	}
	for _, s := range inv.Skipped {
		skipped = append(skipped, types.ObjectValueMust(skippedTypes, map[string]attr.Value{
			"name": types.StringValue(s.Name), "region": types.StringValue(s.Region), "reason": types.StringValue(s.Reason)}))
	}
	m.Databases = types.ListValueMust(types.ObjectType{AttrTypes: dbEntryTypes}, nonNil(dbs))
	m.Skipped = types.ListValueMust(types.ObjectType{AttrTypes: skippedTypes}, nonNil(skipped))
	data, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		resp.Diagnostics.AddError("Cannot write the inventory", tfText(err))
		return
	}
	m.InventoryJSON = types.StringValue(string(data))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func nonNil(v []attr.Value) []attr.Value {
	if v == nil {
		return []attr.Value{}
	}
	return v
}

func dbEntryValue(db policies.Database) attr.Value {
	labels := db.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return types.ObjectValueMust(dbEntryTypes, map[string]attr.Value{
		"name": types.StringValue(db.Name), "identifier": types.StringValue(db.Identifier), "engine": types.StringValue(string(db.Engine)),
		"engine_version": types.StringValue(db.EngineVersion), "kind": types.StringValue(string(db.Kind)), "resource_id": types.StringValue(db.ResourceID),
		"region": types.StringValue(db.Region), "account_id": types.StringValue(db.AccountID), "endpoint": types.StringValue(db.Endpoint),
		"port": types.Int64Value(int64(db.Port)), "db_users": stringList(db.DBUsers), "labels": stringMap(labels),
	})
}

// ---- rdsgate_shard_plan

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

// ---- rdsgate_proxy_config

func newProxyConfigDataSource() datasource.DataSource { return &proxyConfigDataSource{} }

type proxyConfigDataSource struct{}

type proxyConfigModel struct {
	Databases     types.List      `tfsdk:"databases"`
	DatabaseRoles types.Map       `tfsdk:"database_roles"`
	BaseARN       types.String    `tfsdk:"base_arn"`
	ExternalID    types.String    `tfsdk:"external_id"`
	Region        types.String    `tfsdk:"region"`
	CABundle      types.String    `tfsdk:"ca_bundle"`
	ListenHost    types.String    `tfsdk:"listen_host"`
	FirstPort     types.Int64     `tfsdk:"first_port"`
	Ports         types.Map       `tfsdk:"ports"`
	HealthAddress types.String    `tfsdk:"health_address"`
	Addresses     types.Map       `tfsdk:"addresses"`
	AssumeRoleARN types.String    `tfsdk:"assume_role_arn"`
	BinaryPath    types.String    `tfsdk:"binary_path"`
	BinaryURL     types.String    `tfsdk:"binary_url"`
	ConfigPath    types.String    `tfsdk:"config_path"`
	ConfigJSON    types.String    `tfsdk:"config_json"`
	SystemdUnit   types.String    `tfsdk:"systemd_unit"`
	CloudInit     types.String    `tfsdk:"cloud_init"`
	Listeners     types.Map       `tfsdk:"listeners"`
	Gateway       *gatewayModel   `tfsdk:"gateway"`
	RBACRules     []rbacRuleModel `tfsdk:"rbac_rules"`
	AuditLog      types.String    `tfsdk:"audit_log"`
	RBACJSON      types.String    `tfsdk:"rbac_json"`
}

type gatewayModel struct {
	ListenPostgres types.String `tfsdk:"listen_postgres"`
	ListenMySQL    types.String `tfsdk:"listen_mysql"`
	ListenAPI      types.String `tfsdk:"listen_api"`
	TLSCert        types.String `tfsdk:"tls_cert"`
	TLSKey         types.String `tfsdk:"tls_key"`
	ClientCA       types.String `tfsdk:"client_ca"`
	IAMAudience    types.String `tfsdk:"iam_audience"`
	STSEndpoint    types.String `tfsdk:"sts_endpoint"`
	RBACFile       types.String `tfsdk:"rbac_file"`
}

type rbacRuleModel struct {
	Name       types.String `tfsdk:"name"`
	Effect     types.String `tfsdk:"effect"`
	Identities types.List   `tfsdk:"identities"`
	Databases  types.List   `tfsdk:"databases"`
	Labels     types.Map    `tfsdk:"labels"`
	DBUsers    types.List   `tfsdk:"db_users"`
	DBNames    types.List   `tfsdk:"db_names"`
}

func (d *proxyConfigDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_proxy_config"
}

func (d *proxyConfigDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	entry := map[string]schema.Attribute{
		"name": schema.StringAttribute{Required: true}, "identifier": schema.StringAttribute{Optional: true},
		"engine": schema.StringAttribute{Required: true}, "engine_version": schema.StringAttribute{Optional: true},
		"kind": schema.StringAttribute{Required: true}, "resource_id": schema.StringAttribute{Optional: true},
		"region": schema.StringAttribute{Required: true}, "account_id": schema.StringAttribute{Optional: true},
		"endpoint": schema.StringAttribute{Required: true}, "port": schema.Int64Attribute{Required: true},
		"db_users": schema.ListAttribute{Required: true, ElementType: types.StringType},
		"labels":   schema.MapAttribute{Optional: true, ElementType: types.StringType},
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "The proxy's configuration file for a set of databases, with a hardened systemd unit and cloud-init " +
			"user data that installs and starts it (ready for a launch template). Each database is reached through the role " +
			"`database_roles` names for it (from `rdsgate_policy_shards`): the proxy's own, or a shard role by role chaining.",
		Attributes: map[string]schema.Attribute{
			"databases": schema.ListNestedAttribute{Required: true, MarkdownDescription: "The databases, as `rdsgate_policy_shards` takes them (endpoint and port required).",
				NestedObject: schema.NestedAttributeObject{Attributes: entry}},
			"database_roles": schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Role ARN per database (`rdsgate_policy_shards.database_roles`)."},
			"base_arn":       schema.StringAttribute{Optional: true, MarkdownDescription: "The proxy's own principal (`rdsgate_policy_shards.base_arn`): databases granted to it need no role chaining."},
			"external_id":    schema.StringAttribute{Optional: true, MarkdownDescription: "External id of the shard roles."},
			"region":         schema.StringAttribute{Optional: true, MarkdownDescription: "Default region for tokens."},
			"ca_bundle":      schema.StringAttribute{Required: true, MarkdownDescription: "Path of the RDS CA bundle on the proxy's host."},
			"listen_host":    schema.StringAttribute{Optional: true, MarkdownDescription: "Listen address of the sidecar listeners (default `127.0.0.1`; `unix:/dir` for sockets)."},
			"first_port":     schema.Int64Attribute{Optional: true, MarkdownDescription: "Ports not given in `ports` are the free ones from this, in name order (default 15432)."},
			"ports": schema.MapAttribute{Optional: true, ElementType: types.Int64Type,
				MarkdownDescription: "Listener port by database name: give `rdsgate_listener_ports.ports`, which keeps each database's port from one apply to the next. Without it, ports follow name order from `first_port`, and adding a database can move others."},
			"health_address": schema.StringAttribute{Optional: true, MarkdownDescription: "Address of /startup, /readiness, /liveness and /metrics."},
			"gateway": schema.SingleNestedAttribute{Optional: true,
				MarkdownDescription: "Run the proxy as a gateway: clients connect over TLS and prove who they are with a client certificate (`client_ca`) or their AWS identity (`iam_audience`); `rbac_rules` decide what each may reach.",
				Attributes: map[string]schema.Attribute{
					"listen_postgres": schema.StringAttribute{Optional: true, MarkdownDescription: "PostgreSQL listener, such as `0.0.0.0:5432`."},
					"listen_mysql":    schema.StringAttribute{Optional: true, MarkdownDescription: "MySQL listener, such as `0.0.0.0:3306`."},
					"listen_api":      schema.StringAttribute{Optional: true, MarkdownDescription: "HTTPS API for `rdsgate db ls/connect/env`, such as `0.0.0.0:8443`."},
					"tls_cert":        schema.StringAttribute{Required: true, MarkdownDescription: "Path of the gateway's certificate on its host."},
					"tls_key":         schema.StringAttribute{Required: true, MarkdownDescription: "Path of its key."},
					"client_ca":       schema.StringAttribute{Optional: true, MarkdownDescription: "CA that signs client certificates."},
					"iam_audience":    schema.StringAttribute{Optional: true, MarkdownDescription: "This gateway's name in IAM identity tokens: set it to let clients prove who they are with AWS IAM."},
					"sts_endpoint":    schema.StringAttribute{Optional: true, MarkdownDescription: "STS endpoint the gateway calls to check identity tokens (default `https://sts.<region>.amazonaws.com`)."},
					"rbac_file":       schema.StringAttribute{Optional: true, MarkdownDescription: "Where the RBAC file goes on the host (default `/etc/rdsgate/rbac.json`)."},
				}},
			"rbac_rules": schema.ListNestedAttribute{Optional: true,
				MarkdownDescription: "Who may reach what through the gateway: deny by default, an explicit deny wins. Identities are IAM ARNs (`*` and `?` wildcards; assumed-role sessions match as their role; roles and users by account and name, as STS reports no path) or certificate subjects (`CN=*,O=dba`: each attribute named must be in the certificate with a matching value).",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":       schema.StringAttribute{Required: true, MarkdownDescription: "The rule's name; denials name it."},
					"effect":     schema.StringAttribute{Optional: true, MarkdownDescription: "`allow` (default) or `deny`."},
					"identities": schema.ListAttribute{Required: true, ElementType: types.StringType, MarkdownDescription: "Who the rule is about."},
					"databases":  schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Database names (wildcards allowed)."},
					"labels":     schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Databases by label, such as `{ env = \"prod\" }`."},
					"db_users":   schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Database users (required on allow rules; `[\"*\"]` for any)."},
					"db_names":   schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Database names inside the server (required on allow rules)."},
				}}},
			"audit_log": schema.StringAttribute{Optional: true, MarkdownDescription: "Where the audit trail goes: a file path, or `-` for standard output (one JSON line per session start, end and denial)."},
			"rbac_json": schema.StringAttribute{Computed: true, MarkdownDescription: "The RBAC file (cloud-init writes it to `gateway.rbac_file`)."},
			"assume_role_arn": schema.StringAttribute{Optional: true,
				MarkdownDescription: "A role the proxy assumes first, when it does not run as its role (on a laptop, say): the proxy's role."},
			"addresses": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				MarkdownDescription: "Where to connect instead of a database's endpoint, by name (`host:port` of a tunnel or port forward); tokens and the certificate check still name the endpoint."},
			"binary_path":  schema.StringAttribute{Optional: true, MarkdownDescription: "Where the rdsgate binary lives (default `/usr/local/bin/rdsgate`)."},
			"binary_url":   schema.StringAttribute{Optional: true, MarkdownDescription: "Where cloud-init downloads the binary from."},
			"config_path":  schema.StringAttribute{Optional: true, MarkdownDescription: "Where the configuration is written (default `/etc/rdsgate/proxy.json`)."},
			"config_json":  schema.StringAttribute{Computed: true, MarkdownDescription: "The configuration file (`rdsgate proxy start --config`)."},
			"systemd_unit": schema.StringAttribute{Computed: true, MarkdownDescription: "A systemd unit that runs it."},
			"cloud_init":   schema.StringAttribute{Computed: true, MarkdownDescription: "cloud-init user data that installs and starts it."},
			"listeners":    schema.MapAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Listener address per database."},
		},
	}
}

func (d *proxyConfigDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m proxyConfigModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var entries []dbEntryModel
	resp.Diagnostics.Append(m.Databases.ElementsAs(ctx, &entries, false)...)
	roles, _ := mapOf(ctx, m.DatabaseRoles, &resp.Diagnostics)
	pins, _ := intsOf(ctx, m.Ports, &resp.Diagnostics)
	addresses, _ := mapOf(ctx, m.Addresses, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	inv := &policies.Inventory{}
	for _, e := range entries {
		users, _ := stringsOf(ctx, e.DBUsers, &resp.Diagnostics)
		labels, _ := mapOf(ctx, e.Labels, &resp.Diagnostics)
		if len(labels) == 0 {
			labels = nil
		}
		inv.Databases = append(inv.Databases, policies.Database{Name: e.Name.ValueString(), Engine: policies.Engine(e.Engine.ValueString()),
			Kind: policies.ResourceKind(e.Kind.ValueString()), Region: e.Region.ValueString(), Endpoint: e.Endpoint.ValueString(),
			Port: int(e.Port.ValueInt64()), DBUsers: users, Labels: labels})
	}
	chained := map[string]string{}
	for name, arn := range roles {
		if arn != m.BaseARN.ValueString() {
			chained[name] = arn
		}
	}
	cfg, err := proxyconf.FromInventory(inv, chained, m.ExternalID.ValueString(), proxyconf.Options{
		CABundle: m.CABundle.ValueString(), Region: m.Region.ValueString(), HealthAddress: m.HealthAddress.ValueString(),
		ListenHost: m.ListenHost.ValueString(), FirstPort: int(m.FirstPort.ValueInt64()), Ports: pins, Addresses: addresses,
		AssumeRoleARN: m.AssumeRoleARN.ValueString()})
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("databases"), "Invalid proxy configuration", tfText(err))
		return
	}
	files := map[string]string{}
	rbac, diags := rbacOf(ctx, m.RBACRules, m.Gateway != nil)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	rbacJSON, _ := json.MarshalIndent(rbac, "", "  ")
	m.RBACJSON = types.StringValue(string(rbacJSON))
	cfg.AuditLog = m.AuditLog.ValueString()
	if g := m.Gateway; g != nil {
		rbacFile := valueOr(g.RBACFile, "/etc/rdsgate/rbac.json")
		cfg.Gateway = &proxyd.Gateway{ListenPostgres: g.ListenPostgres.ValueString(), ListenMySQL: g.ListenMySQL.ValueString(), ListenAPI: g.ListenAPI.ValueString(),
			TLSCert: g.TLSCert.ValueString(), TLSKey: g.TLSKey.ValueString(), ClientCA: g.ClientCA.ValueString(), RBACFile: rbacFile}
		if a := g.IAMAudience.ValueString(); a != "" {
			cfg.Gateway.IAM = &proxyd.IAMAuth{Audience: a, STSEndpoint: g.STSEndpoint.ValueString()}
		}
		if err := cfg.Validate(); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("gateway"), "Invalid gateway", tfText(err))
			return
		}
		files[rbacFile] = string(rbacJSON) + "\n"
	}
	data, err := proxyconf.JSON(cfg)
	if err != nil {
		resp.Diagnostics.AddError("Cannot write the configuration", tfText(err))
		return
	}
	binary := valueOr(m.BinaryPath, "/usr/local/bin/rdsgate")
	conf := valueOr(m.ConfigPath, "/etc/rdsgate/proxy.json")
	unit := proxyconf.SystemdUnit(binary, conf, cfg)
	url := valueOr(m.BinaryURL, "https://github.com/rdsgate/rdsgate/releases/latest/download/rdsgate-linux-amd64")
	listeners := map[string]string{}
	for _, db := range cfg.Databases {
		listeners[db.Name] = db.Listen
	}
	m.ConfigJSON = types.StringValue(string(data))
	m.SystemdUnit = types.StringValue(unit)
	m.CloudInit = types.StringValue(proxyconf.CloudInit(url, binary, conf, data, unit, files))
	m.Listeners = stringMap(listeners)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func valueOr(v types.String, def string) string {
	if v.ValueString() == "" {
		return def
	}
	return v.ValueString()
}

func (d *proxyConfigDataSource) ValidateConfig(ctx context.Context, req datasource.ValidateConfigRequest, resp *datasource.ValidateConfigResponse) {
	var rulesV types.List
	var gwV types.Object
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("rbac_rules"), &rulesV)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("gateway"), &gwV)...)
	if resp.Diagnostics.HasError() || rulesV.IsUnknown() || gwV.IsUnknown() {
		return // known at apply, checked then
	}
	var rules []rbacRuleModel
	if !rulesV.IsNull() {
		resp.Diagnostics.Append(rulesV.ElementsAs(ctx, &rules, false)...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	_, diags := rbacOf(ctx, rules, !gwV.IsNull())
	resp.Diagnostics.Append(diags...)
}

// rbacOf turns the rules into the proxy's RBAC, each problem pointing at
// its rule and attribute.
func rbacOf(ctx context.Context, rules []rbacRuleModel, gateway bool) (*proxyd.RBAC, diag.Diagnostics) {
	var diags diag.Diagnostics
	r := &proxyd.RBAC{Rules: []proxyd.Rule{}}
	if len(rules) > 0 && !gateway {
		diags.AddAttributeError(path.Root("rbac_rules"), "RBAC without a gateway", "rbac_rules decide what gateway clients may reach; set gateway, or drop the rules (sidecar listeners trust whoever reaches them)")
		return r, diags
	}
	for i, m := range rules {
		at := path.Root("rbac_rules").AtListIndex(i)
		ids, ok1 := stringsOf(ctx, m.Identities, &diags)
		dbs, ok2 := stringsOf(ctx, m.Databases, &diags)
		users, ok3 := stringsOf(ctx, m.DBUsers, &diags)
		names, ok4 := stringsOf(ctx, m.DBNames, &diags)
		labels, ok5 := mapOf(ctx, m.Labels, &diags)
		if !(ok1 && ok2 && ok3 && ok4 && ok5) || m.Name.IsUnknown() || m.Effect.IsUnknown() {
			continue // decided at apply
		}
		if len(labels) == 0 {
			labels = nil
		}
		rule := proxyd.Rule{Name: m.Name.ValueString(), Effect: m.Effect.ValueString(), Identities: ids, Databases: dbs, Labels: labels, DBUsers: users, DBNames: names}
		single := &proxyd.RBAC{Rules: []proxyd.Rule{rule}}
		for _, w := range single.Warnings() {
			diags.AddAttributeWarning(at.AtName("identities"), "RBAC rule matches more widely than written", w)
		}
		if err := single.Validate(); err != nil {
			msg := tfText(err)
			if _, after, ok := strings.Cut(msg, "rules[0]"); ok {
				msg = fmt.Sprintf("rbac_rules[%d]", i) + after
			}
			field := "name"
			for _, f := range []string{"effect", "identities", "databases", "db_users", "db_names"} {
				if strings.Contains(msg, f) {
					field = f
					break
				}
			}
			diags.AddAttributeError(at.AtName(field), "Invalid RBAC rule", msg)
			continue
		}
		for j, prev := range r.Rules {
			if prev.Name == rule.Name {
				diags.AddAttributeError(at.AtName("name"), "Invalid RBAC rule", fmt.Sprintf("rule name %q is also used by rbac_rules[%d]; denials name the rule, so names must be unique", rule.Name, j))
			}
		}
		r.Rules = append(r.Rules, rule)
	}
	return r, diags
}
