package bootstrap

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshift"
	"github.com/aws/aws-sdk-go-v2/service/redshiftserverless"

	"github.com/rdsgate/rdsgate/policies"
)

// Redshift returns a Redshift client for a region.
func (c *Clients) Redshift(region string) *redshift.Client {
	return redshift.NewFromConfig(c.Config, func(o *redshift.Options) {
		o.Region = region
		if c.Endpoints.Redshift != "" {
			o.BaseEndpoint = aws.String(c.Endpoints.Redshift)
		}
	})
}

// RedshiftServerless returns a Redshift Serverless client for a region.
func (c *Clients) RedshiftServerless(region string) *redshiftserverless.Client {
	return redshiftserverless.NewFromConfig(c.Config, func(o *redshiftserverless.Options) {
		o.Region = region
		if c.Endpoints.RedshiftServerless != "" {
			o.BaseEndpoint = aws.String(c.Endpoints.RedshiftServerless)
		}
	})
}

// redshiftClusters adds the provisioned Redshift clusters of a region.
func (d *discoverer) redshiftClusters(ctx context.Context, api *redshift.Client) error {
	pages := redshift.NewDescribeClustersPaginator(api, &redshift.DescribeClustersInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return explain(err, "redshift:DescribeClusters", "region "+d.region)
		}
		for _, cl := range page.Clusters {
			tags := map[string]string{}
			for _, t := range cl.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if !d.match(tags) {
				continue
			}
			id := aws.ToString(cl.ClusterIdentifier)
			if cl.Endpoint == nil || aws.ToString(cl.Endpoint.Address) == "" {
				d.skip(id, "the Redshift cluster has no endpoint yet (status "+aws.ToString(cl.ClusterStatus)+")")
				continue
			}
			vpc := aws.ToString(cl.VpcId)
			d.inv.Databases = append(d.inv.Databases, policies.Database{
				Name: id, Engine: policies.EngineRedshift, EngineVersion: aws.ToString(cl.ClusterVersion), Kind: policies.KindCluster, Identifier: id,
				Region: d.region, AccountID: d.o.AccountID, Endpoint: aws.ToString(cl.Endpoint.Address), Port: int(aws.ToInt32(cl.Endpoint.Port)),
				DBUsers: d.users(tags), Labels: d.labels(tags, string(policies.EngineRedshift), aws.ToString(cl.ClusterVersion), "redshift-cluster", aws.ToString(cl.ClusterStatus), vpc),
			})
		}
	}
	return nil
}

// redshiftWorkgroups adds the Redshift Serverless workgroups of a region.
func (d *discoverer) redshiftWorkgroups(ctx context.Context, api *redshiftserverless.Client) error {
	pages := redshiftserverless.NewListWorkgroupsPaginator(api, &redshiftserverless.ListWorkgroupsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return explain(err, "redshift-serverless:ListWorkgroups", "region "+d.region)
		}
		for _, wg := range page.Workgroups {
			name := aws.ToString(wg.WorkgroupName)
			out, err := api.ListTagsForResource(ctx, &redshiftserverless.ListTagsForResourceInput{ResourceArn: wg.WorkgroupArn})
			if err != nil {
				return explain(err, "redshift-serverless:ListTagsForResource", "workgroup "+name)
			}
			tags := map[string]string{}
			for _, t := range out.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if !d.match(tags) {
				continue
			}
			if wg.Endpoint == nil || aws.ToString(wg.Endpoint.Address) == "" {
				d.skip(name, "the Redshift Serverless workgroup has no endpoint yet (status "+string(wg.Status)+")")
				continue
			}
			d.inv.Databases = append(d.inv.Databases, policies.Database{
				Name: name, Engine: policies.EngineRedshiftServerless, Kind: policies.KindWorkgroup, Identifier: name,
				Region: d.region, AccountID: d.o.AccountID, Endpoint: aws.ToString(wg.Endpoint.Address), Port: int(aws.ToInt32(wg.Endpoint.Port)),
				DBUsers: d.users(tags), Labels: d.labels(tags, string(policies.EngineRedshiftServerless), "", "redshift-workgroup", string(wg.Status), ""),
			})
		}
	}
	return nil
}
