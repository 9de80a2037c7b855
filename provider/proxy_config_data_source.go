package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/internal/proxyconf"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// The rdsgate_proxy_config data source.

func newProxyConfigDataSource() datasource.DataSource { return &proxyConfigDataSource{} }

type proxyConfigDataSource struct{}

type proxyConfigModel struct {
	Databases     types.List       `tfsdk:"databases"`
	DatabaseRoles types.Map        `tfsdk:"database_roles"`
	BaseARN       types.String     `tfsdk:"base_arn"`
	ExternalID    types.String     `tfsdk:"external_id"`
	Region        types.String     `tfsdk:"region"`
	CABundle      types.String     `tfsdk:"ca_bundle"`
	ListenHost    types.String     `tfsdk:"listen_host"`
	FirstPort     types.Int64      `tfsdk:"first_port"`
	Ports         types.Map        `tfsdk:"ports"`
	HealthAddress types.String     `tfsdk:"health_address"`
	Addresses     types.Map        `tfsdk:"addresses"`
	AssumeRoleARN types.String     `tfsdk:"assume_role_arn"`
	BinaryPath    types.String     `tfsdk:"binary_path"`
	BinaryURL     types.String     `tfsdk:"binary_url"`
	ConfigPath    types.String     `tfsdk:"config_path"`
	ConfigJSON    types.String     `tfsdk:"config_json"`
	SystemdUnit   types.String     `tfsdk:"systemd_unit"`
	CloudInit     types.String     `tfsdk:"cloud_init"`
	Listeners     types.Map        `tfsdk:"listeners"`
	Gateway       *gatewayModel    `tfsdk:"gateway"`
	RBACRules     []rbacRuleModel  `tfsdk:"rbac_rules"`
	AuditLog      types.String     `tfsdk:"audit_log"`
	RBACJSON      types.String     `tfsdk:"rbac_json"`
	Kubernetes    *kubernetesModel `tfsdk:"kubernetes"`
	KubeManifests types.Map        `tfsdk:"kubernetes_manifests"`
}

type kubernetesModel struct {
	Image       types.String `tfsdk:"image"`
	Namespace   types.String `tfsdk:"namespace"`
	Name        types.String `tfsdk:"name"`
	IAMRoleARN  types.String `tfsdk:"iam_role_arn"`
	Replicas    types.Int64  `tfsdk:"replicas"`
	MaxReplicas types.Int64  `tfsdk:"max_replicas"`
	ServiceType types.String `tfsdk:"service_type"`
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
			"kubernetes": schema.SingleNestedAttribute{Optional: true,
				MarkdownDescription: "Run the gateway as a fleet on Kubernetes: `kubernetes_manifests` holds its ServiceAccount (IAM roles for service accounts), ConfigMap, Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler, as `rdsgate proxy configure --kubernetes` writes them. Needs `gateway`.",
				Attributes: map[string]schema.Attribute{
					"image":        schema.StringAttribute{Required: true, MarkdownDescription: "Container image that runs rdsgate."},
					"namespace":    schema.StringAttribute{Optional: true, MarkdownDescription: "Namespace of the objects (default: the one they are applied to)."},
					"name":         schema.StringAttribute{Optional: true, MarkdownDescription: "Name of the objects (default `rdsgate-proxy`)."},
					"iam_role_arn": schema.StringAttribute{Optional: true, MarkdownDescription: "The role the pods run as, by IAM roles for service accounts (default `base_arn`)."},
					"replicas":     schema.Int64Attribute{Optional: true, MarkdownDescription: "Pods the fleet keeps at least (default 3)."},
					"max_replicas": schema.Int64Attribute{Optional: true, MarkdownDescription: "Pods the autoscaler may run at 70% CPU (default 10)."},
					"service_type": schema.StringAttribute{Optional: true, MarkdownDescription: "`ClusterIP` (default) or `LoadBalancer` (an NLB with pod targets)."},
				}},
			"kubernetes_manifests": schema.MapAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "With `kubernetes`: the manifests by file name (JSON that `kubectl apply` takes), for a `kubernetes_manifest` resource or files written with `local_file`."},
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
	m.KubeManifests = types.MapNull(types.StringType)
	if k := m.Kubernetes; k != nil {
		if cfg.Gateway == nil {
			resp.Diagnostics.AddAttributeError(path.Root("kubernetes"), "Kubernetes needs a gateway",
				"A fleet on Kubernetes serves as a gateway (a database's own listener would be each pod's loopback): set gateway.")
			return
		}
		manifests, _, err := proxyconf.Kubernetes(cfg, proxyconf.KubeOptions{Name: valueOr(k.Name, "rdsgate-proxy"), Namespace: k.Namespace.ValueString(),
			Image: k.Image.ValueString(), IAMRoleARN: valueOr(k.IAMRoleARN, m.BaseARN.ValueString()), Replicas: int(k.Replicas.ValueInt64()),
			MaxReplicas: int(k.MaxReplicas.ValueInt64()), ServiceType: k.ServiceType.ValueString(), RBAC: append(rbacJSON, '\n')})
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("kubernetes"), "Invalid Kubernetes settings", tfText(err))
			return
		}
		byName := map[string]string{}
		for name, b := range manifests {
			byName[name] = string(b)
		}
		m.KubeManifests = stringMap(byName)
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
