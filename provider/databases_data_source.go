package provider

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

// The rdsgate_databases data source.

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
