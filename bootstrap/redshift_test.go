package bootstrap

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshift"
	redshifttypes "github.com/aws/aws-sdk-go-v2/service/redshift/types"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// TestDiscoverRedshift: provisioned clusters from moto and serverless
// workgroups from the emulator in test/rdsemu (moto 5.2.1 has no Redshift
// Serverless) become inventory entries the planner leaves out (they need no
// rds-db:connect) and that the proxy serves with the Redshift APIs'
// credentials; tag filters apply to both.
func TestDiscoverRedshift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.StartMoto(t)
	api := rdsemu.StartRedshiftAPI(t, &rdsemu.RedshiftCredentials{}, func(string) string { return "arn:aws:iam::" + account + ":user/discoverer" },
		nil, []string{"analytics", "scratch"})
	api.WorkgroupTags = map[string]map[string]string{"analytics": {"env": "prod", TagDBUsers: "bi"}, "scratch": {"env": "dev"}}
	c := connect(t, m.URL)
	c.Endpoints.RedshiftServerless = api.URL
	for id, env := range map[string]string{"warehouse": "prod", "sandbox": "dev"} {
		if _, err := c.Redshift("us-east-1").CreateCluster(ctx, &redshift.CreateClusterInput{ClusterIdentifier: aws.String(id), NodeType: aws.String("ra3.xlplus"),
			MasterUsername: aws.String("admin"), MasterUserPassword: aws.String("Password-1"), Tags: []redshifttypes.Tag{{Key: aws.String("env"), Value: aws.String(env)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Tag filters, and Redshift beside an RDS type.
	inv, err := Discover(ctx, c, DiscoverOptions{Types: []string{DiscoverRDS, policies.TypeRedshift, policies.TypeRedshiftServerless}, Tags: map[string]string{"env": "prod"},
		Regions: []string{"us-east-1"}, AccountID: account})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, db := range inv.Databases {
		names = append(names, db.Name+":"+string(db.Engine)+":"+string(db.Kind))
	}
	if got := strings.Join(names, " "); got != "analytics:redshift-serverless:workgroup warehouse:redshift:cluster" {
		t.Fatalf("discovered %s", got)
	}
	wg, wh := inv.Databases[0], inv.Databases[1]
	if wg.Port != 5439 || wg.Identifier != "analytics" || strings.Join(wg.DBUsers, ",") != "bi" || wg.Labels["endpoint-type"] != "redshift-workgroup" ||
		wh.Endpoint == "" || wh.Port == 0 || wh.Identifier != "warehouse" {
		t.Fatalf("entries: %+v %+v", wg, wh)
	}
	if err := inv.Validate(); err != nil {
		t.Fatalf("the inventory does not validate: %v", err)
	}
	// The planner leaves Redshift out: nothing to grant with rds-db:connect.
	plan, err := policies.NewPlan(policies.PlanInput{Inventory: inv, Quotas: policies.DefaultQuotas(), Target: policies.Target{Kind: policies.PrincipalRole, Name: "proxy", AccountID: account}})
	if err != nil || len(plan.Databases) != 0 {
		t.Fatalf("plan of Redshift alone: %v %+v", err, plan)
	}
}
