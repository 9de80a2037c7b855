package proxyd

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// TestRedshift: a provisioned cluster, the same cluster as the proxy's own
// IAM identity, and a serverless workgroup, each served through the
// PostgreSQL listener with temporary credentials from the Redshift APIs
// (emulated: the credentials they issue are the only passwords the
// emulated endpoints take, over md5 as Redshift asks), signed through the
// proxy's role, and cached for their lifetime.
func TestRedshift(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	var rec *testenv.STSRecorder
	var api *rdsemu.RedshiftAPI
	creds := &rdsemu.RedshiftCredentials{}
	var cluster, workgroup *rdsemu.Server
	e := newEnv(t, func(e *env, c *Config) {
		rec = testenv.StartSTSRecorder(t, m.URL, func(id, secret, session string) { e.keys.Add(id, secret, session) })
		api = rdsemu.StartRedshiftAPI(t, creds, rec.Role, []string{"warehouse"}, []string{"analytics"})
		e.pg.SQL(t, "postgres", `CREATE USER "IAMR:rdsgate-proxy"`)
		cluster = rdsemu.Redshift(t, e.pg, creds, rdsemu.Options{})
		workgroup = rdsemu.Redshift(t, e.pg, creds, rdsemu.Options{})
		c.AssumeRoleARN = "arn:aws:iam::123456789012:role/rdsgate-proxy"
		c.AWSEndpoints = map[string]string{ServiceRedshift: api.URL, ServiceRedshiftServerless: api.URL}
		c.Databases = append(c.Databases,
			Database{Name: "warehouse", Protocol: ProtocolPostgres, Service: ServiceRedshift, Cluster: "warehouse", Endpoint: cluster.Endpoint, Listen: "127.0.0.1:0"},
			Database{Name: "warehouse-iam", Protocol: ProtocolPostgres, Service: ServiceRedshift, Cluster: "warehouse", IAMIdentity: true, Endpoint: cluster.Endpoint, Listen: "127.0.0.1:0"},
			Database{Name: "analytics", Protocol: ProtocolPostgres, Service: ServiceRedshiftServerless, Workgroup: "analytics", Endpoint: workgroup.Endpoint, Listen: "127.0.0.1:0"},
			Database{Name: "lost", Protocol: ProtocolPostgres, Service: ServiceRedshift, Cluster: "no-such-cluster", Endpoint: cluster.Endpoint, Listen: "127.0.0.1:0"},
		)
	})
	e.srv.Close()
	cfg := e.awsConfig()
	cfg.BaseEndpoint = aws.String(rec.URL)
	e.start(WithAWSConfig(cfg))
	for db, want := range map[string]string{"warehouse": "app", "warehouse-iam": "IAMR:rdsgate-proxy", "analytics": "IAMR:rdsgate-proxy"} {
		if out, err := psql(t, e.pgDSN(db, "app", "postgres"), "-c", "select current_user"); err != nil || out != want {
			t.Fatalf("%s: %v %q, want %q (emulator: %s %s)", db, err, out, want, cluster.LastRefusal(), workgroup.LastRefusal())
		}
	}
	if n := api.Calls.Load(); n != 3 {
		t.Fatalf("%d credential requests for 3 databases", n)
	}
	// Cached for their lifetime: more sessions, no more requests.
	for range 4 {
		if out, err := psql(t, e.pgDSN("warehouse", "app", "postgres"), "-c", "select 1"); err != nil || out != "1" {
			t.Fatalf("warehouse again: %v %s", err, out)
		}
	}
	if n := api.Calls.Load(); n != 3 {
		t.Fatalf("%d credential requests after 4 more sessions: the credentials were not reused", n)
	}
	// Another database user is another set of credentials.
	e.pg.SQL(t, "postgres", "CREATE USER readonly")
	if out, err := psql(t, e.pgDSN("warehouse", "readonly", "postgres"), "-c", "select current_user"); err != nil || out != "readonly" {
		t.Fatalf("warehouse as readonly: %v %s", err, out)
	}
	// A cluster the API does not know: the client hears why.
	out, err := psql(t, e.pgDSN("lost", "app", "postgres"), "-c", "select 1")
	if err == nil || !strings.Contains(out, "ClusterNotFound") || !strings.Contains(out, "no-such-cluster") {
		t.Fatalf("unknown cluster: %v %s", err, out)
	}
}
