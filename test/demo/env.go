// Package demo runs rdsgate's whole flow on one machine with no AWS
// account: moto's server as AWS (IAM, STS, RDS), real PostgreSQL and
// MariaDB behind the RDS emulator of test/rdsemu, registered as RDS
// instances in moto; `terraform apply` of examples/complete with the
// provider built from this checkout; the proxy started from the
// configuration apply produced; psql and mysql through it as an
// IAM-authenticated user.
//
// `make demo` drives it through cmd/rdsgate-demo; the end-to-end test runs
// the same steps.
package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rds"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck/iamread"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// Region and account of the emulated AWS.
const (
	Region  = "us-east-1"
	Account = testenv.AccountID
	// DBUser is the IAM-authenticated database user of the demo.
	DBUser = "app"
	// mysqlPassword is what the MySQL emulator logs in to MariaDB with once
	// a token checks out (RDS does this inside the server).
	mysqlPassword = "rdsgate-demo-inner-password"
)

// Database is one emulated RDS database.
type Database struct {
	Name       string `json:"name"`     // rdsgate's name, the identifier
	Engine     string `json:"engine"`   // postgres or mariadb
	Endpoint   string `json:"endpoint"` // what RDS gave out: host:port, as tokens name it
	Address    string `json:"address"`  // where the emulator listens
	ResourceID string `json:"resource_id"`
}

// Env is the running environment; its JSON form is what `rdsgate-demo up`
// reads from the background process.
type Env struct {
	MotoURL string `json:"moto_url"`
	// AWSURL is where Terraform and the CLI find AWS: moto, or a layer in
	// front of it that lags like real IAM (Options.IAMLag).
	AWSURL    string     `json:"aws_url"`
	STSURL    string     `json:"sts_url"`
	CABundle  string     `json:"ca_bundle"`
	Databases []Database `json:"databases"`

	iam *bootstrap.Clients
}

// Clients are SDK clients on the emulated AWS.
func (e *Env) Clients() *bootstrap.Clients { return e.iam }

// Start brings up moto, an STS front that tells the RDS emulator about the
// credentials it issues, PostgreSQL and MariaDB with TLS, their RDS
// instances in moto, and an RDS emulator in front of each that checks
// tokens like RDS: signature, user, host, expiry, and the signer's IAM
// permission rds-db:connect, judged on what moto's IAM holds.
func Start(t testenv.T, dir string) *Env {
	t.Helper()
	return StartWith(t, dir, Options{})
}

// Options change the environment.
type Options struct {
	// IAMLag puts a layer in front of moto for Terraform and the CLI that
	// behaves like real IAM's eventual consistency for this long after each
	// creation (RDSGATE_DEMO_IAM_LAG for make demo).
	IAMLag time.Duration
}

// StartWith is Start with options.
func StartWith(t testenv.T, dir string, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	moto := testenv.StartMoto(t)
	keys := &rdsemu.Keys{}
	keys.Add(testenv.AccessKeyID, testenv.SecretAccessKey, "")
	sts := testenv.StartSTSRecorder(t, moto.URL, func(id, secret, session string) { keys.Add(id, secret, session) })
	c, err := bootstrap.Connect(ctx, bootstrap.Config{Region: Region, EndpointURL: moto.URL, MaxBackoff: 50 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{MotoURL: moto.URL, AWSURL: moto.URL, STSURL: sts.URL, iam: c}
	if o.IAMLag > 0 {
		fp := testenv.StartFaultProxy(t, moto.URL)
		fp.Lag(o.IAMLag)
		e.AWSURL = fp.URL
	}

	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	my := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	pg.SQL(t, "postgres", "DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	pg.SQL(t, "postgres", "CREATE USER "+DBUser+"; GRANT rds_iam TO "+DBUser+"; CREATE TABLE orders (id int primary key, item text); "+
		"INSERT INTO orders VALUES (1, 'IAM-authenticated through rdsgate'); GRANT SELECT ON orders TO "+DBUser)
	my.SQL(t, "CREATE DATABASE billing; CREATE TABLE billing.invoices (id int primary key, total decimal(10,2)); INSERT INTO billing.invoices VALUES (1, 42.00); "+
		"CREATE USER '"+DBUser+"'@'%' IDENTIFIED BY '"+mysqlPassword+"'; GRANT SELECT ON billing.* TO '"+DBUser+"'@'%'")

	api, err := c.RDS(Region)
	if err != nil {
		t.Fatal(err)
	}
	register := func(id, engine, version string, port int32) *bootstrap.DatabaseInfo {
		if _, err := api.CreateDBInstance(ctx, &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(id), Engine: aws.String(engine),
			EngineVersion: aws.String(version), DBInstanceClass: aws.String("db.t4g.micro"), MasterUsername: aws.String("admin"),
			MasterUserPassword: aws.String("not-used-by-the-demo"), AllocatedStorage: aws.Int32(20), Port: aws.Int32(port)}); err != nil {
			t.Fatal(err)
		}
		info, err := bootstrap.DescribeDatabase(ctx, api, policies.KindInstance, id)
		if err != nil || info == nil {
			t.Fatalf("describing %s: %v", id, err)
		}
		return info
	}
	orders := register("orders", "postgres", "15.8", 5432)
	billing := register("billing", "mariadb", "10.11.9", 3306)

	authorize := func(resourceID string) func(keyID, user string) error {
		return func(keyID, user string) error { return Authorize(ctx, c, sts, resourceID, keyID, user) }
	}
	pgEmu := rdsemu.Postgres(t, pg, rdsemu.Options{Keys: keys, Endpoint: endpointOf(orders), Authorize: authorize(orders.ResourceID)})
	myEmu := rdsemu.MySQL(t, my, mysqlPassword, rdsemu.Options{Keys: keys, Endpoint: endpointOf(billing), Authorize: authorize(billing.ResourceID)})
	e.Databases = []Database{
		{Name: "billing", Engine: "mariadb", Endpoint: myEmu.Endpoint, Address: myEmu.Address, ResourceID: billing.ResourceID},
		{Name: "orders", Engine: "postgres", Endpoint: pgEmu.Endpoint, Address: pgEmu.Address, ResourceID: orders.ResourceID},
	}

	// One CA bundle for both, as the RDS bundle covers every region.
	pgCA, err1 := os.ReadFile(pg.CA.PEMFile)
	myCA, err2 := os.ReadFile(my.CA.PEMFile)
	if err1 != nil || err2 != nil {
		t.Fatalf("reading the CAs: %v %v", err1, err2)
	}
	e.CABundle = filepath.Join(dir, "rds-ca-bundle.pem")
	if err := os.WriteFile(e.CABundle, append(pgCA, myCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func endpointOf(info *bootstrap.DatabaseInfo) string {
	return net.JoinHostPort(info.Endpoint, strconv.Itoa(info.Port))
}

// Authorize is the emulated RDS's IAM check: the key must come from STS for
// a role, and the role's policies (inline, managed, boundary, as moto holds
// them, judged by rdsgate's evaluator) must allow rds-db:connect on the
// database user's ARN.
func Authorize(ctx context.Context, c *bootstrap.Clients, sts *testenv.STSRecorder, resourceID, keyID, user string) error {
	assumed := sts.Role(keyID)
	if assumed == "" {
		return fmt.Errorf("access key %s belongs to no role session; the proxy signs with its role's credentials", keyID)
	}
	n, err := policies.ParseIAMARN(assumed)
	if err != nil {
		return err
	}
	role, _, _ := strings.Cut(n.Name, "/")
	// Judged by iamcheck, the model written from AWS's documentation, not
	// by rdsgate's own evaluator: an emulator that shared the planner's
	// reading of IAM could not catch a mistake in it.
	w, err := iamread.ReadPrincipal(ctx, c.IAM, "role", role)
	if err != nil {
		return fmt.Errorf("role %s: %v", role, err)
	}
	arn := policies.DBUserARN{Partition: "aws", Region: Region, AccountID: Account, ResourceID: resourceID, DBUser: user}.String()
	if !w.Allows(w.Base, "rds-db:connect", arn) {
		return fmt.Errorf("%s may not rds-db:connect to %s", w.Base, arn)
	}
	return nil
}
