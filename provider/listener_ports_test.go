package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// portsConfig is a proxy configuration for databases (shop* are MySQL)
// whose ports rdsgate_listener_ports keeps, with pins.
func portsConfig(names []string, pins string) string {
	var dbs []string
	for _, n := range names {
		engine, port := "postgres", 5432
		if strings.HasPrefix(n, "shop") {
			engine, port = "mysql", 3306
		}
		dbs = append(dbs, fmt.Sprintf(`{ name = %q, engine = %q, kind = "instance", region = "us-east-1", endpoint = "%s.abc.us-east-1.rds.amazonaws.com", port = %d, db_users = ["app"] }`, n, engine, n, port))
	}
	return fmt.Sprintf(`
provider "rdsgate" {
  region = "us-east-1"
}

locals {
  databases = [%s]
}

resource "rdsgate_listener_ports" "p" {
  databases = [for d in local.databases : d.name]
  pinned    = %s
}

data "rdsgate_proxy_config" "c" {
  databases = local.databases
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
  ports     = rdsgate_listener_ports.p.ports
}
`, strings.Join(dbs, ",\n    "), pins)
}

func ports(m map[string]int) knownvalue.Check {
	checks := map[string]knownvalue.Check{}
	for k, v := range m {
		checks[k] = knownvalue.Int64Exact(int64(v))
	}
	return knownvalue.MapExact(checks)
}

// The trial that found it: adding a database moved MySQL "shop" to another
// port and gave its port to a PostgreSQL database. With
// rdsgate_listener_ports the plan shows the exact ports, an added database
// moves none, a removed one frees its port, and a pin that would take
// another database's port fails at plan time.
func TestAccListenerPortsNeverMove(t *testing.T) {
	t.Parallel()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config: portsConfig([]string{"ledger", "orders", "shop"}, "{}"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"), ports(map[string]int{"ledger": 15432, "orders": 15433, "shop": 15434})),
				}},
				Check: resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.shop", "127.0.0.1:15434"),
			},
			{
				// "analytics" sorts first; name order would have moved all three.
				Config: portsConfig([]string{"analytics", "ledger", "orders", "shop"}, "{}"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_listener_ports.p", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"),
						ports(map[string]int{"analytics": 15435, "ledger": 15432, "orders": 15433, "shop": 15434})),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.shop", "127.0.0.1:15434"),
					resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.analytics", "127.0.0.1:15435"),
				),
			},
			{
				// A pin onto ledger's port: refused at plan, naming both.
				Config:      portsConfig([]string{"analytics", "ledger", "orders", "shop"}, "{ analytics = 15432 }"),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)port 15432 is pinned for analytics, but ledger listens on it\s+already`),
			},
			{
				// ledger goes, zeta comes: zeta takes the freed port, nobody moves.
				Config: portsConfig([]string{"analytics", "orders", "shop", "zeta"}, "{ shop = 3307 }"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"),
						ports(map[string]int{"analytics": 15435, "orders": 15433, "shop": 3307, "zeta": 15432})),
				}},
			},
			{
				// Applied again as is: nothing to do.
				Config:             portsConfig([]string{"analytics", "orders", "shop", "zeta"}, "{ shop = 3307 }"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: false,
			},
		},
	})
}

// TestAccProviderBlockValidated: what AWS would refuse at apply (after
// retries, as an HTTP 500 from an unknown region's endpoint) fails at plan,
// with the attribute and a suggestion.
func TestAccProviderBlockValidated(t *testing.T) {
	t.Parallel()
	config := func(provider string) string {
		return "provider \"rdsgate\" {\n" + provider + "\n}\n" + `
resource "rdsgate_listener_ports" "p" {
  databases = ["orders"]
}
`
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config(`region = "us-eats-1"`), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Unknown region.*region = "us-eats-1".*unknown region "us-eats-1" \(did you mean\s+"us-east-1"\?\)`)},
			{Config: config("region = \"us-east-1\"\nendpoints {\n  iam = \"localhost:5000\"\n}"), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Not an endpoint URL.*"localhost:5000" is not an http\(s\) URL`)},
			{Config: config("region = \"us-east-1\"\nassume_role {\n  role_arn = \"arn:aws:iam::123456789012:user/deployer\"\n}"), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Not a role ARN`)},
		},
	})
}
