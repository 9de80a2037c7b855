package provider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/policies"
)

// The shard plan's inputs and outputs, shared by the rdsgate_policy_shards
// resource and the rdsgate_shard_plan data source.

type dbEntryModel struct {
	Name          types.String `tfsdk:"name"`
	Identifier    types.String `tfsdk:"identifier"`
	Engine        types.String `tfsdk:"engine"`
	EngineVersion types.String `tfsdk:"engine_version"`
	Kind          types.String `tfsdk:"kind"`
	ResourceID    types.String `tfsdk:"resource_id"`
	Region        types.String `tfsdk:"region"`
	AccountID     types.String `tfsdk:"account_id"`
	Endpoint      types.String `tfsdk:"endpoint"`
	Port          types.Int64  `tfsdk:"port"`
	DBUsers       types.List   `tfsdk:"db_users"`
	Labels        types.Map    `tfsdk:"labels"`
}

// shardInputs are the attributes a plan is made from.
type shardInputs struct {
	BaseRole        types.String `tfsdk:"base_role"`
	User            types.String `tfsdk:"user"`
	Path            types.String `tfsdk:"path"`
	AccountID       types.String `tfsdk:"account_id"`
	MaxShardRoles   types.Int64  `tfsdk:"max_shard_roles"`
	ShardRolePrefix types.String `tfsdk:"shard_role_prefix"`
	ExternalID      types.String `tfsdk:"external_id"`
	MaxManaged      types.Int64  `tfsdk:"max_managed"`
	ReservedInline  types.Int64  `tfsdk:"reserved_inline"`
	ReservedManaged types.Int64  `tfsdk:"reserved_managed"`
	Databases       types.List   `tfsdk:"databases"`
}

// shardOutputs are what a plan says.
type shardOutputs struct {
	BaseARN       types.String `tfsdk:"base_arn"`
	Documents     types.Map    `tfsdk:"documents"`
	DatabaseRoles types.Map    `tfsdk:"database_roles"`
	ShardRoleARNs types.List   `tfsdk:"shard_role_arns"`
	Stats         types.Object `tfsdk:"stats"`
}

var statsTypes = map[string]attr.Type{
	"databases": types.Int64Type, "documents": types.Int64Type, "lower_bound": types.Int64Type,
	"moved": types.Int64Type, "principals": types.Int64Type,
}

var dbEntryAttrs = map[string]schema.Attribute{
	"name":           schema.StringAttribute{Required: true, MarkdownDescription: "rdsgate's name for the database (unique)."},
	"identifier":     schema.StringAttribute{Optional: true, MarkdownDescription: "AWS identifier of the instance, cluster or proxy."},
	"engine":         schema.StringAttribute{Required: true, MarkdownDescription: "`postgres`, `mysql`, `mariadb`, `aurora-postgresql` or `aurora-mysql`."},
	"engine_version": schema.StringAttribute{Optional: true, MarkdownDescription: "Required for `mariadb` (IAM authentication needs 10.6 or later)."},
	"kind":           schema.StringAttribute{Required: true, MarkdownDescription: "`instance`, `cluster` or `proxy`."},
	"resource_id":    schema.StringAttribute{Required: true, MarkdownDescription: "`db-...`, `cluster-...` or `prx-...`."},
	"region":         schema.StringAttribute{Required: true, MarkdownDescription: "Region of the database."},
	"account_id":     schema.StringAttribute{Required: true, MarkdownDescription: "Account of the database."},
	"endpoint":       schema.StringAttribute{Optional: true, MarkdownDescription: "Host name, for the proxy's configuration."},
	"port":           schema.Int64Attribute{Optional: true, MarkdownDescription: "Port, for the proxy's configuration."},
	"db_users":       schema.ListAttribute{Required: true, ElementType: types.StringType, MarkdownDescription: "Database users the proxy may connect as (`[\"*\"]` for any)."},
	"labels":         schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Labels for RBAC."},
}

// shardInputAttrs returns the input attributes, for a resource (with
// defaults) or a data source (the same names).
func shardInputAttrs() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"base_role": schema.StringAttribute{Optional: true, PlanModifiers: replaces,
			MarkdownDescription: "Name (or ARN) of the proxy's role, which holds the first documents and may assume the shard roles. Give `base_role` or `user`."},
		"user": schema.StringAttribute{Optional: true, PlanModifiers: replaces,
			MarkdownDescription: "Name (or ARN) of the proxy's IAM user, when it runs as a user."},
		"path": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString("/"), PlanModifiers: replaces,
			MarkdownDescription: "Path of the base principal (default `/`)."},
		"account_id": schema.StringAttribute{Optional: true, Computed: true,
			MarkdownDescription: "Account of the base principal; read from the databases (or the caller) when not given."},
		"max_shard_roles": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(10),
			MarkdownDescription: "How many shard roles the plan may create (default 10; 0 keeps everything on the base principal)."},
		"shard_role_prefix": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""),
			MarkdownDescription: "Shard roles are named prefix + `001`, ...; default `<base>-shard-`."},
		"external_id": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""),
			MarkdownDescription: "External id the shard roles' trust policies require."},
		"max_managed": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(10),
			MarkdownDescription: "Managed policies per principal: 10 by default, up to 20 where the account's quota was raised."},
		"reserved_inline": schema.Int64Attribute{Optional: true, Computed: true,
			MarkdownDescription: "Characters of the base principal's inline budget (10,240 for a role) that its other inline policies use. " +
				"Leave it out and the provider reads them from IAM at every plan, adding `pending_inline_policies`; the plan shows the value it reserved."},
		"reserved_managed": schema.Int64Attribute{Optional: true, Computed: true,
			MarkdownDescription: "Managed policies attached to the base principal by others. Leave it out and the provider counts them in IAM at every plan, " +
				"adding `pending_managed_policy_arns`."},
		"databases": schema.ListNestedAttribute{Required: true,
			MarkdownDescription: "The databases to grant `rds-db:connect` for. `rdsgate_database` resources and the `rdsgate_databases` data source's entries have these attributes, so `[for d in rdsgate_database.all : d]` works.",
			NestedObject:        schema.NestedAttributeObject{Attributes: dbEntryAttrs}},
	}
}

func shardOutputAttrs() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"base_arn": schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the base principal."},
		"documents": schema.MapAttribute{Computed: true, ElementType: types.StringType,
			MarkdownDescription: "Every policy document of the plan in canonical JSON, keyed `KIND/PRINCIPAL/inline|managed/POLICY` " +
				"(`role/proxy/managed/proxy-connect-01`). After a refresh, a document IAM holds differently (by meaning) shows as what IAM holds, " +
				"so the plan shows the change back. A key `unattached/POLICY` is a connect policy rdsgate created but never attached (an apply " +
				"stopped between the two): no plan has that key, so the plan shows it going; apply attaches the policy where the plan has it and deletes it otherwise."},
		"database_roles": schema.MapAttribute{Computed: true, ElementType: types.StringType,
			MarkdownDescription: "For each database, the ARN of the principal whose policy grants it: the base principal or a shard role the proxy assumes."},
		"shard_role_arns": schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "ARNs of the shard roles."},
		"stats": schema.SingleNestedAttribute{Computed: true, MarkdownDescription: "Databases, documents, the lower bound on documents, principals, and databases moved by the last change.",
			Attributes: map[string]schema.Attribute{
				"databases":   schema.Int64Attribute{Computed: true, MarkdownDescription: "Databases in the plan."},
				"documents":   schema.Int64Attribute{Computed: true, MarkdownDescription: "Policy documents."},
				"lower_bound": schema.Int64Attribute{Computed: true, MarkdownDescription: "Fewest documents any plan could use."},
				"moved":       schema.Int64Attribute{Computed: true, MarkdownDescription: "Databases that moved to another document."},
				"principals":  schema.Int64Attribute{Computed: true, MarkdownDescription: "Base principal and shard roles."},
			}},
	}
}

// planInput builds the planner's input. known is false while an input is
// unknown (a database created in the same apply); errors are added with the
// attribute they concern.
func (in *shardInputs) planInput(ctx context.Context, diags *diagsT) (policies.PlanInput, bool) {
	var pi policies.PlanInput
	// account_id is also computed: unknown reads as "not given".
	if in.Databases.IsUnknown() || in.BaseRole.IsUnknown() || in.User.IsUnknown() ||
		in.ExternalID.IsUnknown() || in.ShardRolePrefix.IsUnknown() || in.Path.IsUnknown() ||
		in.MaxShardRoles.IsUnknown() || in.MaxManaged.IsUnknown() || in.ReservedInline.IsUnknown() || in.ReservedManaged.IsUnknown() {
		return pi, false
	}
	t := policies.Target{
		Path: in.Path.ValueString(), AccountID: in.AccountID.ValueString(), MaxShardRoles: int(in.MaxShardRoles.ValueInt64()),
		ShardRolePrefix: in.ShardRolePrefix.ValueString(), ExternalID: in.ExternalID.ValueString(),
		ReservedInline: int(in.ReservedInline.ValueInt64()), ReservedManaged: int(in.ReservedManaged.ValueInt64()),
	}
	role, user := in.BaseRole.ValueString(), in.User.ValueString()
	switch {
	case role != "" && user != "":
		diags.AddAttributeError(path.Root("user"), "Conflicting principals", "give base_role or user, not both")
		return pi, false
	case role == "" && user == "":
		diags.AddAttributeError(path.Root("base_role"), "Missing principal", "name the proxy's principal with base_role (a role name or ARN) or user")
		return pi, false
	case role != "":
		t.Kind, t.Name = policies.PrincipalRole, role
	default:
		t.Kind, t.Name = policies.PrincipalUser, user
	}
	field := map[policies.PrincipalKind]string{policies.PrincipalRole: "base_role", policies.PrincipalUser: "user"}[t.Kind]
	if strings.HasPrefix(t.Name, "arn:") {
		n, err := policies.ParseIAMARN(t.Name)
		if err != nil || n.Type != string(t.Kind) {
			diags.AddAttributeError(path.Root(field), "Invalid ARN", fmt.Sprintf("%q is not an IAM %s ARN", t.Name, t.Kind))
			return pi, false
		}
		t.Name, t.Path, t.AccountID = n.Name, n.Path, n.AccountID
	}
	q := policies.DefaultQuotas()
	q.AttachedPoliciesPerRole = int(in.MaxManaged.ValueInt64())
	q.AttachedPoliciesPerUser = min(20, q.AttachedPoliciesPerRole)
	if err := q.Validate(); err != nil {
		diags.AddAttributeError(path.Root("max_managed"), "Invalid max_managed", tfText(err))
		return pi, false
	}
	var entries []dbEntryModel
	diags.Append(in.Databases.ElementsAs(ctx, &entries, false)...)
	if diags.HasError() {
		return pi, false
	}
	inv := &policies.Inventory{Databases: make([]policies.Database, 0, len(entries))}
	for _, e := range entries {
		users, ok := stringsOf(ctx, e.DBUsers, diags)
		labels, ok2 := mapOf(ctx, e.Labels, diags)
		for _, v := range []types.String{e.Name, e.Identifier, e.Engine, e.EngineVersion, e.Kind, e.ResourceID, e.Region, e.AccountID, e.Endpoint} {
			ok = ok && !v.IsUnknown()
		}
		if !ok || !ok2 || e.Port.IsUnknown() {
			return pi, false
		}
		if len(labels) == 0 {
			labels = nil
		}
		inv.Databases = append(inv.Databases, policies.Database{
			Name: e.Name.ValueString(), Identifier: e.Identifier.ValueString(), Engine: policies.Engine(e.Engine.ValueString()),
			EngineVersion: e.EngineVersion.ValueString(), Kind: policies.ResourceKind(e.Kind.ValueString()), ResourceID: e.ResourceID.ValueString(),
			Region: e.Region.ValueString(), AccountID: e.AccountID.ValueString(), Endpoint: e.Endpoint.ValueString(), Port: int(e.Port.ValueInt64()),
			DBUsers: users, Labels: labels,
		})
	}
	if err := inv.Validate(); err != nil {
		var ie *policies.InputErrors
		if errors.As(err, &ie) {
			addInputErrors(diags, ie.List)
		} else {
			diags.AddAttributeError(path.Root("databases"), "Invalid databases", tfText(err))
		}
		return pi, false
	}
	return policies.PlanInput{Inventory: inv, Target: t, Quotas: q}, true
}

// groupAfter is how many databases with the same kind of problem are
// reported one by one; the rest are one error that lists them.
const groupAfter = 3

// addInputErrors reports problems with databases: each at its attribute,
// and, when many databases share one problem (300 resource ids from a
// broken expression), the first few so plus one error that lists the
// others, rather than hundreds of errors that say the same thing.
func addInputErrors(diags *diagsT, list []*policies.InputError) {
	byField := map[string][]*policies.InputError{}
	var fields []string
	for _, e := range list {
		if _, seen := byField[e.Field]; !seen {
			fields = append(fields, e.Field)
		}
		byField[e.Field] = append(byField[e.Field], e)
	}
	for _, f := range fields {
		group := byField[f]
		for i, e := range group {
			if i == groupAfter && len(group) > groupAfter+1 {
				var entries []string
				for _, rest := range group[groupAfter:] {
					entries = append(entries, rest.Entry)
				}
				if len(entries) > 20 {
					entries = append(entries[:20], fmt.Sprintf("and %d more", len(entries)-20))
				}
				what := f
				if what == "" {
					what = "their entries"
				}
				diags.AddAttributeError(path.Root("databases"), "Invalid databases",
					fmt.Sprintf("%d more databases have a problem with %s like the ones above: %s", len(group)-groupAfter, what, strings.Join(entries, ", ")))
				break
			}
			p := path.Root("databases")
			if e.Index >= 0 {
				p = p.AtListIndex(e.Index)
				if e.Field != "" {
					p = p.AtName(e.Field)
				}
			}
			diags.AddAttributeError(p, "Invalid database", e.Error())
		}
	}
}

// outputs renders a plan into the computed attributes.
func outputs(plan *policies.Plan) shardOutputs {
	docs := map[string]string{}
	roles := map[string]string{}
	var shards []string
	for _, pp := range plan.Principals {
		for _, p := range pp.InlinePolicies {
			docs[docKey(string(pp.Kind), pp.Name, false, p.Name)] = docJSON(p.Document)
		}
		for _, p := range pp.ManagedPolicies {
			docs[docKey(string(pp.Kind), pp.Name, true, p.Name)] = docJSON(p.Document)
		}
		for _, n := range pp.Databases {
			roles[n] = pp.ARN
		}
		if pp.Shard {
			shards = append(shards, pp.ARN)
		}
	}
	sort.Strings(shards)
	stats := types.ObjectValueMust(statsTypes, map[string]attr.Value{
		"databases": types.Int64Value(int64(plan.Stats.Databases)), "documents": types.Int64Value(int64(plan.Stats.Documents)),
		"lower_bound": types.Int64Value(int64(plan.Stats.LowerBound)), "moved": types.Int64Value(int64(plan.Stats.Moved)),
		"principals": types.Int64Value(int64(len(plan.Principals))),
	})
	if shards == nil {
		shards = []string{}
	}
	return shardOutputs{
		BaseARN: types.StringValue(plan.Base.ARN), Documents: stringMap(docs), DatabaseRoles: stringMap(roles),
		ShardRoleARNs: stringList(shards), Stats: stats,
	}
}

// unattachedKey prefixes the documents key of a connect policy that
// rdsgate created and never attached.
const unattachedKey = "unattached/"

func docKey(kind, principal string, managed bool, policy string) string {
	slot := "inline"
	if managed {
		slot = "managed"
	}
	return kind + "/" + principal + "/" + slot + "/" + policy
}

// addPlanError reports a planner error; one that names a fix is shown as is.
func addPlanError(diags *diagsT, err error) {
	diags.AddAttributeError(path.Root("databases"), "No shard plan fits", tfText(err))
}
