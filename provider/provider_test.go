package provider

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
)

// The acceptance tests run the real terraform binary (terraform-plugin-
// testing) against moto's server. They always run: TestMain turns TF_ACC on,
// and a missing terraform binary is a failure, not a skip.
func TestMain(m *testing.M) {
	if os.Getenv("TF_ACC") == "" {
		os.Setenv("TF_ACC", "1")
	}
	if _, err := exec.LookPath("terraform"); err != nil && os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		fmt.Fprintln(os.Stderr, "the provider's acceptance tests need the terraform binary on the PATH (.ci/run installs it)")
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": testenv.AccessKeyID, "AWS_SECRET_ACCESS_KEY": testenv.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED": "true", "TF_ACC_PROVIDER_NAMESPACE": "rdsgate", "CHECKPOINT_DISABLE": "1",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "RDSGATE_LEASE_SETTLE": "10ms",
	} {
		os.Setenv(k, v)
	}
	os.Unsetenv("AWS_PROFILE")
	os.Unsetenv("AWS_ENDPOINT_URL")
	os.Exit(m.Run())
}

var factories = map[string]func() (tfprotov6.ProviderServer, error){
	"rdsgate": providerserver.NewProtocol6WithError(New("test")()),
}

// env is one moto server with SDK clients for setting up and checking.
type env struct {
	url string
	c   *bootstrap.Clients
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := testenv.StartMoto(t)
	c, err := bootstrap.Connect(context.Background(), bootstrap.Config{Region: "us-east-1", EndpointURL: m.URL, MaxBackoff: 50 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return &env{url: m.URL, c: c}
}

// providerHCL configures the provider for the emulator.
func (e *env) providerHCL() string {
	return fmt.Sprintf(`
provider "rdsgate" {
  region = "us-east-1"
  endpoints {
    iam = %[1]q
    sts = %[1]q
    rds = %[1]q
  }
  default_tags {
    tags = { "managed-by" = "terraform" }
  }
}
`, e.url)
}

func (e *env) instance(t *testing.T, id, engine string, iamAuth bool) {
	t.Helper()
	api, err := e.c.RDS("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	in := &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(id), Engine: aws.String(engine), DBInstanceClass: aws.String("db.t3.micro"),
		MasterUsername: aws.String("admin"), MasterUserPassword: aws.String("password-password"), AllocatedStorage: aws.Int32(20),
		EnableIAMDatabaseAuthentication: aws.Bool(iamAuth)}
	if _, err := api.CreateDBInstance(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}
