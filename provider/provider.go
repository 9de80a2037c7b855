// Package provider is the rdsgate Terraform provider
// (terraform-provider-rdsgate), built on terraform-plugin-framework. It is a
// thin adapter: every decision (policy documents, shard plans, trust
// relationships, what to write to IAM and in which order) is made by the
// policies and bootstrap packages the command line uses, so `terraform
// apply` and `rdsgate shards apply` write the same thing.
package provider

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

// Address is the provider's registry address.
const Address = "registry.terraform.io/rdsgate/rdsgate"

// New returns the provider for providerserver.Serve.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &rdsgateProvider{version: version} }
}

type rdsgateProvider struct{ version string }

var (
	_ provider.Provider                   = (*rdsgateProvider)(nil)
	_ provider.ProviderWithValidateConfig = (*rdsgateProvider)(nil)
)

type providerModel struct {
	Region      types.String      `tfsdk:"region"`
	Profile     types.String      `tfsdk:"profile"`
	AssumeRole  *assumeRoleModel  `tfsdk:"assume_role"`
	Endpoints   *endpointsModel   `tfsdk:"endpoints"`
	DefaultTags *defaultTagsModel `tfsdk:"default_tags"`
}

type assumeRoleModel struct {
	RoleARN     types.String `tfsdk:"role_arn"`
	ExternalID  types.String `tfsdk:"external_id"`
	SessionName types.String `tfsdk:"session_name"`
}

type endpointsModel struct {
	IAM types.String `tfsdk:"iam"`
	STS types.String `tfsdk:"sts"`
	RDS types.String `tfsdk:"rds"`
}

type defaultTagsModel struct {
	Tags types.Map `tfsdk:"tags"`
}

func (p *rdsgateProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "rdsgate"
	resp.Version = p.version
}

func (p *rdsgateProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The rdsgate provider sets up IAM-authenticated access to Amazon RDS and Aurora databases: IAM " +
			"authentication on each database, the proxy's role and its bootstrap policy, shard roles with their trust " +
			"relationships, and `rds-db:connect` permissions packed into size-aware policy shards that always fit IAM's quotas.\n\n" +
			"Credentials and region come from the AWS SDK's standard chain, as with the AWS provider: `AWS_ACCESS_KEY_ID`/" +
			"`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and the shared files, web identity, container and instance metadata; " +
			"`AWS_REGION`; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_IAM`/`_STS`/`_RDS` for emulators.",
		Attributes: map[string]schema.Attribute{
			"region": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Region for RDS calls and the default region of databases. Falls back to `AWS_REGION`, then the profile's region."},
			"profile": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Named profile of the shared AWS config files. Falls back to `AWS_PROFILE`."},
		},
		Blocks: map[string]schema.Block{
			"assume_role": schema.SingleNestedBlock{
				MarkdownDescription: "Assume this role before any call (for example the account's deployment role).",
				Attributes: map[string]schema.Attribute{
					"role_arn":     schema.StringAttribute{Optional: true, MarkdownDescription: "ARN of the role to assume."},
					"external_id":  schema.StringAttribute{Optional: true, MarkdownDescription: "External id the role's trust policy requires."},
					"session_name": schema.StringAttribute{Optional: true, MarkdownDescription: "Session name CloudTrail shows (default `rdsgate-terraform`)."},
				},
			},
			"endpoints": schema.SingleNestedBlock{
				MarkdownDescription: "Service endpoints, for emulators such as moto's server. Fall back to `AWS_ENDPOINT_URL_IAM`, `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_RDS` and `AWS_ENDPOINT_URL`.",
				Attributes: map[string]schema.Attribute{
					"iam": schema.StringAttribute{Optional: true, MarkdownDescription: "IAM endpoint URL."},
					"sts": schema.StringAttribute{Optional: true, MarkdownDescription: "STS endpoint URL."},
					"rds": schema.StringAttribute{Optional: true, MarkdownDescription: "RDS endpoint URL."},
				},
			},
			"default_tags": schema.SingleNestedBlock{
				MarkdownDescription: "Tags added to every IAM role the provider creates (a resource's own tags win).",
				Attributes: map[string]schema.Attribute{
					"tags": schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Tag keys and values."},
				},
			},
		},
	}
}

// ValidateConfig refuses at plan (terraform validate, even) what AWS would
// refuse at apply: a region that does not exist, a role ARN that is not
// one, an endpoint that is not a URL. Values not known yet are left to
// Configure.
func (p *rdsgateProvider) ValidateConfig(ctx context.Context, req provider.ValidateConfigRequest, resp *provider.ValidateConfigResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if r := m.Region; !r.IsNull() && !r.IsUnknown() {
		if _, err := policies.PartitionOf(r.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("region"), "Unknown region", tfText(err))
		}
	}
	if a := m.AssumeRole; a != nil && !a.RoleARN.IsNull() && !a.RoleARN.IsUnknown() && a.RoleARN.ValueString() != "" {
		if n, err := policies.ParseIAMARN(a.RoleARN.ValueString()); err != nil || n.Type != "role" {
			resp.Diagnostics.AddAttributeError(path.Root("assume_role").AtName("role_arn"), "Not a role ARN",
				fmt.Sprintf("%q is not an IAM role ARN: give the role to assume as arn:aws:iam::123456789012:role/NAME", a.RoleARN.ValueString()))
		}
	}
	if e := m.Endpoints; e != nil {
		for name, v := range map[string]types.String{"iam": e.IAM, "sts": e.STS, "rds": e.RDS} {
			if v.IsNull() || v.IsUnknown() || v.ValueString() == "" {
				continue
			}
			if u, err := url.Parse(v.ValueString()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				resp.Diagnostics.AddAttributeError(path.Root("endpoints").AtName(name), "Not an endpoint URL",
					fmt.Sprintf("%q is not an http(s) URL such as https://%s.amazonaws.com or http://localhost:5000", v.ValueString(), name))
			}
		}
	}
}

// providerData is what resources and data sources get from Configure.
type providerData struct {
	clients     *bootstrap.Clients
	defaultTags map[string]string

	mu      sync.Mutex
	account string
}

// accountID returns the account of the credentials in use, asked once.
func (d *providerData) accountID(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.account != "" {
		return d.account, nil
	}
	acct, _, err := bootstrap.CallerAccount(ctx, d.clients)
	if err != nil {
		return "", err
	}
	d.account = acct
	return acct, nil
}

func (p *rdsgateProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cfg := bootstrap.Config{Region: m.Region.ValueString(), Profile: m.Profile.ValueString()}
	if m.Endpoints != nil {
		cfg.Endpoints = bootstrap.Endpoints{IAM: m.Endpoints.IAM.ValueString(), STS: m.Endpoints.STS.ValueString(), RDS: m.Endpoints.RDS.ValueString()}
	}
	c, err := bootstrap.Connect(ctx, cfg)
	if err != nil {
		resp.Diagnostics.AddError("Cannot load the AWS configuration", tfText(err))
		return
	}
	if c.Config.Region == "" {
		// IAM and STS are global; RDS calls say when they need a region.
		c.UseIAMRegion(policies.PartitionAWS)
	}
	if m.AssumeRole != nil && m.AssumeRole.RoleARN.ValueString() != "" {
		session := m.AssumeRole.SessionName.ValueString()
		if session == "" {
			session = "rdsgate-terraform"
		}
		c, err = c.AssumeRoleSession(ctx, m.AssumeRole.RoleARN.ValueString(), m.AssumeRole.ExternalID.ValueString(), session)
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("assume_role").AtName("role_arn"), "Cannot assume the provider's role", tfText(err))
			return
		}
	}
	data := &providerData{clients: c, defaultTags: map[string]string{}}
	if m.DefaultTags != nil && !m.DefaultTags.Tags.IsNull() {
		resp.Diagnostics.Append(m.DefaultTags.Tags.ElementsAs(ctx, &data.defaultTags, false)...)
	}
	resp.ResourceData = data
	resp.DataSourceData = data
}

func (p *rdsgateProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		newDatabaseResource,
		newAccessRoleResource,
		newRoleTrustResource,
		newPolicyShardsResource,
		newBootstrapPolicyResource,
		newListenerPortsResource,
	}
}

func (p *rdsgateProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		newBootstrapPolicyDocumentDataSource,
		newDatabasesDataSource,
		newShardPlanDataSource,
		newProxyConfigDataSource,
	}
}

// configured returns the provider data a resource's Configure received, or
// adds an error when it is of the wrong type.
func configured(data any, add func(string, string)) *providerData {
	if data == nil {
		return nil
	}
	d, ok := data.(*providerData)
	if !ok {
		add("Unexpected provider data", fmt.Sprintf("got %T; this is a bug in the rdsgate provider", data))
		return nil
	}
	return d
}
