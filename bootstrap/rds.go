package bootstrap

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	rdstypes "github.com/aws/aws-sdk-go-v2/service/rds/types"

	"github.com/rdsgate/rdsgate/policies"
)

// RDSAPI is the part of RDS rdsgate uses; *rds.Client implements it.
type RDSAPI interface {
	DescribeDBInstances(context.Context, *rds.DescribeDBInstancesInput, ...func(*rds.Options)) (*rds.DescribeDBInstancesOutput, error)
	DescribeDBClusters(context.Context, *rds.DescribeDBClustersInput, ...func(*rds.Options)) (*rds.DescribeDBClustersOutput, error)
	DescribeDBProxies(context.Context, *rds.DescribeDBProxiesInput, ...func(*rds.Options)) (*rds.DescribeDBProxiesOutput, error)
	DescribeDBClusterEndpoints(context.Context, *rds.DescribeDBClusterEndpointsInput, ...func(*rds.Options)) (*rds.DescribeDBClusterEndpointsOutput, error)
	DescribeDBProxyEndpoints(context.Context, *rds.DescribeDBProxyEndpointsInput, ...func(*rds.Options)) (*rds.DescribeDBProxyEndpointsOutput, error)
	ModifyDBInstance(context.Context, *rds.ModifyDBInstanceInput, ...func(*rds.Options)) (*rds.ModifyDBInstanceOutput, error)
	ModifyDBCluster(context.Context, *rds.ModifyDBClusterInput, ...func(*rds.Options)) (*rds.ModifyDBClusterOutput, error)
	ListTagsForResource(context.Context, *rds.ListTagsForResourceInput, ...func(*rds.Options)) (*rds.ListTagsForResourceOutput, error)
}

var _ RDSAPI = (*rds.Client)(nil)

// unsupported says why AWS does not support IAM database authentication for
// an engine, version and mode, or "" when it does.
func unsupported(engine, version, mode string) string {
	switch {
	case mode == "serverless":
		return "Aurora Serverless v1 does not support IAM database authentication; migrate to Aurora Serverless v2"
	case engine == string(policies.EngineMariaDB):
		if ok, err := mariaDBSupported(version); err != nil || !ok {
			return fmt.Sprintf("MariaDB %s does not support IAM database authentication; upgrade to 10.6 or later", version)
		}
	case engine == string(policies.EnginePostgres), engine == string(policies.EngineMySQL),
		engine == string(policies.EngineAuroraPostgres), engine == string(policies.EngineAuroraMySQL):
	default:
		return fmt.Sprintf("engine %s does not support IAM database authentication", engine)
	}
	return ""
}

func mariaDBSupported(version string) (bool, error) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false, fmt.Errorf("version %q", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("version %q", version)
	}
	return major > 10 || major == 10 && minor >= 6, nil
}

// IAMAuthResult says what EnableIAMAuth did.
type IAMAuthResult struct {
	Kind           policies.ResourceKind
	Identifier     string
	AlreadyEnabled bool
	// Confirmed is true when RDS reports the setting on after the change;
	// without --apply-immediately RDS may wait for the maintenance window.
	Confirmed bool
}

// EnableIAMAuth turns on IAM database authentication on an instance or a
// cluster, after checking that AWS supports it there.
func EnableIAMAuth(ctx context.Context, api RDSAPI, kind policies.ResourceKind, id string, applyImmediately bool) (*IAMAuthResult, error) {
	res := &IAMAuthResult{Kind: kind, Identifier: id}
	subject := fmt.Sprintf("%s %s", kind, id)
	switch kind {
	case policies.KindInstance:
		out, err := api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(id)})
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("no DB instance %q in this region: check --region and the identifier (aws rds describe-db-instances)", id)
			}
			return nil, explain(err, "rds:DescribeDBInstances", subject)
		}
		db := out.DBInstances[0]
		if c := aws.ToString(db.DBClusterIdentifier); c != "" {
			return nil, fmt.Errorf("instance %s is a member of cluster %s: IAM authentication is set on the cluster; use --cluster %s", id, c, c)
		}
		if why := unsupported(aws.ToString(db.Engine), aws.ToString(db.EngineVersion), ""); why != "" {
			return nil, fmt.Errorf("%s: %s", subject, why)
		}
		if aws.ToBool(db.IAMDatabaseAuthenticationEnabled) {
			res.AlreadyEnabled, res.Confirmed = true, true
			return res, nil
		}
		if _, err := api.ModifyDBInstance(ctx, &rds.ModifyDBInstanceInput{DBInstanceIdentifier: aws.String(id),
			EnableIAMDatabaseAuthentication: aws.Bool(true), ApplyImmediately: aws.Bool(applyImmediately)}); err != nil {
			return nil, explain(err, "rds:ModifyDBInstance", subject)
		}
		after, err := api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(id)})
		if err == nil && len(after.DBInstances) == 1 {
			res.Confirmed = aws.ToBool(after.DBInstances[0].IAMDatabaseAuthenticationEnabled)
		}
		return res, nil
	case policies.KindCluster:
		out, err := api.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String(id)})
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("no DB cluster %q in this region: check --region and the identifier (aws rds describe-db-clusters)", id)
			}
			return nil, explain(err, "rds:DescribeDBClusters", subject)
		}
		cl := out.DBClusters[0]
		if why := unsupported(aws.ToString(cl.Engine), aws.ToString(cl.EngineVersion), aws.ToString(cl.EngineMode)); why != "" {
			return nil, fmt.Errorf("%s: %s", subject, why)
		}
		if aws.ToBool(cl.IAMDatabaseAuthenticationEnabled) {
			res.AlreadyEnabled, res.Confirmed = true, true
			return res, nil
		}
		if _, err := api.ModifyDBCluster(ctx, &rds.ModifyDBClusterInput{DBClusterIdentifier: aws.String(id),
			EnableIAMDatabaseAuthentication: aws.Bool(true), ApplyImmediately: aws.Bool(applyImmediately)}); err != nil {
			return nil, explain(err, "rds:ModifyDBCluster", subject)
		}
		after, err := api.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String(id)})
		if err == nil && len(after.DBClusters) == 1 {
			res.Confirmed = aws.ToBool(after.DBClusters[0].IAMDatabaseAuthenticationEnabled)
		}
		return res, nil
	}
	return nil, fmt.Errorf("%w: IAM authentication is enabled on an instance or a cluster, not a %s", policies.ErrInvalidInput, kind)
}

// DiscoverOptions filter discovery.
type DiscoverOptions struct {
	// Types are rds (instances), aurora (clusters), rds-proxy, redshift
	// (provisioned clusters) and redshift-serverless (workgroups); the
	// default is the first three.
	Types   []string
	Regions []string
	// Tags must all match: key=value, or key alone for any value.
	Tags map[string]string
	// DBUsers for databases without an rdsgate:db-users tag.
	DBUsers []string
	// AccountID of the credentials in use (labels and ARNs).
	AccountID string
}

// Discovery types.
const (
	DiscoverRDS      = "rds"
	DiscoverAurora   = "aurora"
	DiscoverRDSProxy = "rds-proxy"
	// TagDBUsers on a database lists its users, comma separated.
	TagDBUsers = "rdsgate:db-users"
)

// CheckDiscoverTypes checks --types of discover before any AWS call.
func CheckDiscoverTypes(types []string) error {
	for _, t := range types {
		switch t {
		case DiscoverRDS, DiscoverAurora, DiscoverRDSProxy, policies.TypeRedshift, policies.TypeRedshiftServerless:
		default:
			return fmt.Errorf("%w: unknown type %q; use rds, aurora, rds-proxy, redshift or redshift-serverless", policies.ErrInvalidInput, t)
		}
	}
	return nil
}

// Discover lists the databases of the given types and regions as an
// inventory, with the ones rdsgate cannot serve in Skipped.
func Discover(ctx context.Context, c *Clients, o DiscoverOptions) (*policies.Inventory, error) {
	if len(o.Regions) == 0 {
		if c.Config.Region == "" {
			return nil, ErrNoRegion
		}
		o.Regions = []string{c.Config.Region}
	}
	if err := CheckDiscoverTypes(o.Types); err != nil {
		return nil, err
	}
	if len(o.Types) == 0 {
		o.Types = []string{DiscoverRDS, DiscoverAurora, DiscoverRDSProxy}
	}
	for _, r := range o.Regions {
		if _, err := policies.PartitionOf(r); err != nil {
			return nil, fmt.Errorf("%w: --regions: %w", policies.ErrInvalidInput, err)
		}
	}
	if len(o.DBUsers) == 0 {
		o.DBUsers = []string{"*"}
	}
	inv := &policies.Inventory{Databases: []policies.Database{}}
	for _, region := range o.Regions {
		api, err := c.RDS(region)
		if err != nil {
			return nil, err
		}
		d := &discoverer{api: api, region: region, o: o, inv: inv}
		for _, t := range o.Types {
			var err error
			switch t {
			case DiscoverRDS:
				err = d.instances(ctx)
			case DiscoverAurora:
				err = d.clusters(ctx)
			case DiscoverRDSProxy:
				err = d.proxies(ctx)
			case policies.TypeRedshift:
				err = d.redshiftClusters(ctx, c.Redshift(region))
			case policies.TypeRedshiftServerless:
				err = d.redshiftWorkgroups(ctx, c.RedshiftServerless(region))
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// The same name in several regions gets the region.
	policies.DisambiguateNames([]*policies.Inventory{inv}, func(d policies.Database) string { return d.Region })
	sort.Slice(inv.Databases, func(i, j int) bool { return inv.Databases[i].Name < inv.Databases[j].Name })
	sort.Slice(inv.Skipped, func(i, j int) bool { return inv.Skipped[i].Name < inv.Skipped[j].Name })
	return inv, nil
}

type discoverer struct {
	api    RDSAPI
	region string
	o      DiscoverOptions
	inv    *policies.Inventory
}

func rdsTags(tags []rdstypes.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func (d *discoverer) match(tags map[string]string) bool {
	for k, v := range d.o.Tags {
		got, ok := tags[k]
		if !ok || v != "" && got != v {
			return false
		}
	}
	return true
}

func (d *discoverer) users(tags map[string]string) []string {
	if v := tags[TagDBUsers]; v != "" {
		var out []string
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, u)
			}
		}
		return out
	}
	return d.o.DBUsers
}

func (d *discoverer) labels(tags map[string]string, engine, version, endpointType, status, vpc string) map[string]string {
	l := map[string]string{}
	for k, v := range tags {
		if k != TagDBUsers {
			l[k] = v
		}
	}
	for k, v := range map[string]string{"account-id": d.o.AccountID, "region": d.region, "engine": engine, "engine-version": version,
		"endpoint-type": endpointType, "status": status, "vpc-id": vpc} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

func (d *discoverer) skip(name, reason string) {
	d.inv.Skipped = append(d.inv.Skipped, policies.SkippedDatabase{Name: name, Region: d.region, Reason: reason})
}

func (d *discoverer) skipIAMAuth(name string, kind policies.ResourceKind, reason string) {
	d.inv.Skipped = append(d.inv.Skipped, policies.SkippedDatabase{Name: name, Region: d.region, Reason: reason, IAMAuthDisabled: true, Kind: kind})
}

func (d *discoverer) instances(ctx context.Context) error {
	pages := rds.NewDescribeDBInstancesPaginator(d.api, &rds.DescribeDBInstancesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return explain(err, "rds:DescribeDBInstances", "region "+d.region)
		}
		for _, db := range page.DBInstances {
			if aws.ToString(db.DBClusterIdentifier) != "" {
				continue // a cluster member: served through its cluster
			}
			tags := rdsTags(db.TagList)
			if !d.match(tags) {
				continue
			}
			id, engine, version := aws.ToString(db.DBInstanceIdentifier), aws.ToString(db.Engine), aws.ToString(db.EngineVersion)
			if why := unsupported(engine, version, ""); why != "" {
				d.skip(id, why)
				continue
			}
			if !aws.ToBool(db.IAMDatabaseAuthenticationEnabled) {
				d.skipIAMAuth(id, policies.KindInstance, "IAM database authentication is disabled; enable it with: rdsgate enable-iam-auth --region "+d.region+" --instance "+id)
				continue
			}
			var endpoint string
			var port int
			if db.Endpoint != nil {
				endpoint, port = aws.ToString(db.Endpoint.Address), int(aws.ToInt32(db.Endpoint.Port))
			}
			vpc := ""
			if db.DBSubnetGroup != nil {
				vpc = aws.ToString(db.DBSubnetGroup.VpcId)
			}
			d.inv.Databases = append(d.inv.Databases, policies.Database{
				Name: id, Engine: policies.Engine(engine), EngineVersion: version, Kind: policies.KindInstance, Identifier: id,
				ResourceID: aws.ToString(db.DbiResourceId), Region: d.region, AccountID: d.o.AccountID,
				Endpoint: endpoint, Port: port, DBUsers: d.users(tags),
				Labels: d.labels(tags, engine, version, "instance", aws.ToString(db.DBInstanceStatus), vpc),
			})
		}
	}
	return nil
}

func (d *discoverer) clusters(ctx context.Context) error {
	pages := rds.NewDescribeDBClustersPaginator(d.api, &rds.DescribeDBClustersInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return explain(err, "rds:DescribeDBClusters", "region "+d.region)
		}
		for _, cl := range page.DBClusters {
			tags := rdsTags(cl.TagList)
			if !d.match(tags) {
				continue
			}
			id, engine, version := aws.ToString(cl.DBClusterIdentifier), aws.ToString(cl.Engine), aws.ToString(cl.EngineVersion)
			if why := unsupported(engine, version, aws.ToString(cl.EngineMode)); why != "" {
				d.skip(id, why)
				continue
			}
			if !aws.ToBool(cl.IAMDatabaseAuthenticationEnabled) {
				d.skipIAMAuth(id, policies.KindCluster, "IAM database authentication is disabled; enable it with: rdsgate enable-iam-auth --region "+d.region+" --cluster "+id)
				continue
			}
			base := policies.Database{
				Engine: policies.Engine(engine), EngineVersion: version, Kind: policies.KindCluster, Identifier: id,
				ResourceID: aws.ToString(cl.DbClusterResourceId), Region: d.region, AccountID: d.o.AccountID,
				Port: int(aws.ToInt32(cl.Port)), DBUsers: d.users(tags),
			}
			writer := base
			writer.Name, writer.Endpoint = id, aws.ToString(cl.Endpoint)
			writer.Labels = d.labels(tags, engine, version, "cluster-writer", aws.ToString(cl.Status), "")
			d.inv.Databases = append(d.inv.Databases, writer)
			if r := aws.ToString(cl.ReaderEndpoint); r != "" && r != writer.Endpoint {
				reader := base
				reader.Name, reader.Endpoint = id+"-reader", r
				reader.Labels = d.labels(tags, engine, version, "cluster-reader", aws.ToString(cl.Status), "")
				d.inv.Databases = append(d.inv.Databases, reader)
			}
			d.customEndpoints(ctx, base, tags)
		}
	}
	return nil
}

func (d *discoverer) proxies(ctx context.Context) error {
	pages := rds.NewDescribeDBProxiesPaginator(d.api, &rds.DescribeDBProxiesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return explain(err, "rds:DescribeDBProxies", "region "+d.region)
		}
		for _, px := range page.DBProxies {
			name, arn := aws.ToString(px.DBProxyName), aws.ToString(px.DBProxyArn)
			tagsOut, err := d.api.ListTagsForResource(ctx, &rds.ListTagsForResourceInput{ResourceName: aws.String(arn)})
			if err != nil {
				return explain(err, "rds:ListTagsForResource", "proxy "+name)
			}
			tags := rdsTags(tagsOut.TagList)
			if !d.match(tags) {
				continue
			}
			var engine policies.Engine
			port := 0
			switch aws.ToString(px.EngineFamily) {
			case "POSTGRESQL":
				engine, port = policies.EnginePostgres, 5432
			case "MYSQL":
				engine, port = policies.EngineMySQL, 3306
			default:
				d.skip(name, fmt.Sprintf("RDS Proxy engine family %s is not PostgreSQL or MySQL", aws.ToString(px.EngineFamily)))
				continue
			}
			iamOn := false
			for _, a := range px.Auth {
				if a.IAMAuth == rdstypes.IAMAuthModeRequired || a.IAMAuth == rdstypes.IAMAuthModeEnabled {
					iamOn = true
				}
			}
			if aws.ToString(px.DefaultAuthScheme) == "IAM_AUTH" {
				iamOn = true
			}
			if !iamOn {
				d.skip(name, "IAM authentication is disabled on the proxy; set IAMAuth to REQUIRED in its authentication settings")
				continue
			}
			db := policies.Database{
				Name: name, Engine: engine, Kind: policies.KindProxy, Identifier: name,
				ResourceID: arn[strings.LastIndexByte(arn, ':')+1:], Region: d.region, AccountID: d.o.AccountID,
				Endpoint: aws.ToString(px.Endpoint), Port: port, DBUsers: d.users(tags),
				Labels: d.labels(tags, string(engine), "", "proxy", string(px.Status), aws.ToString(px.VpcId)),
			}
			d.inv.Databases = append(d.inv.Databases, db)
			d.proxyEndpoints(ctx, db, tags)
		}
	}
	return nil
}

// customEndpoints adds a cluster's custom endpoints (a chosen set of its
// instances, reader or any), each served under its own name with the
// cluster's permission. When they cannot be listed (a policy from before
// rdsgate asked for rds:DescribeDBClusterEndpoints) the cluster is still
// served and the endpoints are named as skipped.
func (d *discoverer) customEndpoints(ctx context.Context, cluster policies.Database, tags map[string]string) {
	in := &rds.DescribeDBClusterEndpointsInput{DBClusterIdentifier: aws.String(cluster.Identifier)}
	for {
		out, err := d.api.DescribeDBClusterEndpoints(ctx, in)
		if err != nil {
			d.skip(cluster.Identifier+" (custom endpoints)", "could not list the cluster's custom endpoints: "+explain(err, "rds:DescribeDBClusterEndpoints", "cluster "+cluster.Identifier).Error())
			return
		}
		for _, ep := range out.DBClusterEndpoints {
			if aws.ToString(ep.EndpointType) != "CUSTOM" {
				continue
			}
			db := cluster
			db.Name, db.Endpoint = aws.ToString(ep.DBClusterEndpointIdentifier), aws.ToString(ep.Endpoint)
			db.Labels = d.labels(tags, string(cluster.Engine), cluster.EngineVersion, "cluster-custom", aws.ToString(ep.Status), "")
			db.Labels["custom-endpoint-type"] = strings.ToLower(aws.ToString(ep.CustomEndpointType))
			db.Labels["cluster"] = cluster.Identifier
			d.inv.Databases = append(d.inv.Databases, db)
		}
		if aws.ToString(out.Marker) == "" {
			return
		}
		in.Marker = out.Marker
	}
}

// proxyEndpoints adds an RDS Proxy's endpoints beyond its default one
// (read-only endpoints, endpoints in other VPCs), each served under its own
// name with the proxy's permission.
func (d *discoverer) proxyEndpoints(ctx context.Context, proxy policies.Database, tags map[string]string) {
	in := &rds.DescribeDBProxyEndpointsInput{DBProxyName: aws.String(proxy.Identifier)}
	for {
		out, err := d.api.DescribeDBProxyEndpoints(ctx, in)
		if err != nil {
			d.skip(proxy.Identifier+" (endpoints)", "could not list the proxy's endpoints: "+explain(err, "rds:DescribeDBProxyEndpoints", "proxy "+proxy.Identifier).Error())
			return
		}
		for _, ep := range out.DBProxyEndpoints {
			if aws.ToBool(ep.IsDefault) {
				continue
			}
			db := proxy
			db.Name, db.Endpoint = aws.ToString(ep.DBProxyEndpointName), aws.ToString(ep.Endpoint)
			db.Labels = d.labels(tags, string(proxy.Engine), "", "proxy-endpoint", string(ep.Status), aws.ToString(ep.VpcId))
			db.Labels["target-role"] = strings.ToLower(string(ep.TargetRole))
			db.Labels["proxy"] = proxy.Identifier
			d.inv.Databases = append(d.inv.Databases, db)
		}
		if aws.ToString(out.Marker) == "" {
			return
		}
		in.Marker = out.Marker
	}
}

// DatabaseInfo is what RDS says about one instance or cluster.
type DatabaseInfo struct {
	Kind           policies.ResourceKind
	Identifier     string
	ARN            string
	ResourceID     string
	Engine         string
	EngineVersion  string
	EngineMode     string
	Endpoint       string
	ReaderEndpoint string
	Port           int
	Status         string
	IAMAuthEnabled bool
	// Cluster is the cluster an instance belongs to, if any.
	Cluster string
	// Unsupported says why IAM authentication cannot work here, or "".
	Unsupported string
}

// DescribeDatabase reads an instance or cluster; nil when it does not exist.
func DescribeDatabase(ctx context.Context, api RDSAPI, kind policies.ResourceKind, id string) (*DatabaseInfo, error) {
	subject := fmt.Sprintf("%s %s", kind, id)
	switch kind {
	case policies.KindInstance:
		out, err := api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(id)})
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explain(err, "rds:DescribeDBInstances", subject)
		}
		if len(out.DBInstances) != 1 {
			return nil, nil
		}
		db := out.DBInstances[0]
		info := &DatabaseInfo{Kind: kind, Identifier: id, ARN: aws.ToString(db.DBInstanceArn), ResourceID: aws.ToString(db.DbiResourceId),
			Engine: aws.ToString(db.Engine), EngineVersion: aws.ToString(db.EngineVersion), Status: aws.ToString(db.DBInstanceStatus),
			IAMAuthEnabled: aws.ToBool(db.IAMDatabaseAuthenticationEnabled), Cluster: aws.ToString(db.DBClusterIdentifier)}
		if db.Endpoint != nil {
			info.Endpoint, info.Port = aws.ToString(db.Endpoint.Address), int(aws.ToInt32(db.Endpoint.Port))
		}
		info.Unsupported = unsupported(info.Engine, info.EngineVersion, "")
		return info, nil
	case policies.KindCluster:
		out, err := api.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String(id)})
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explain(err, "rds:DescribeDBClusters", subject)
		}
		if len(out.DBClusters) != 1 {
			return nil, nil
		}
		cl := out.DBClusters[0]
		info := &DatabaseInfo{Kind: kind, Identifier: id, ARN: aws.ToString(cl.DBClusterArn), ResourceID: aws.ToString(cl.DbClusterResourceId),
			Engine: aws.ToString(cl.Engine), EngineVersion: aws.ToString(cl.EngineVersion), EngineMode: aws.ToString(cl.EngineMode),
			Endpoint: aws.ToString(cl.Endpoint), ReaderEndpoint: aws.ToString(cl.ReaderEndpoint), Port: int(aws.ToInt32(cl.Port)),
			Status: aws.ToString(cl.Status), IAMAuthEnabled: aws.ToBool(cl.IAMDatabaseAuthenticationEnabled)}
		info.Unsupported = unsupported(info.Engine, info.EngineVersion, info.EngineMode)
		return info, nil
	}
	return nil, fmt.Errorf("%w: a database is an instance or a cluster, not a %s", policies.ErrInvalidInput, kind)
}
