# Each database keeps its listener port while it exists; new ones take the
# free ports from 15432. "ledger" is pinned where its clients expect it.
resource "rdsgate_listener_ports" "proxy" {
  databases = ["orders", "shop", "ledger"]
  pinned    = { ledger = 6432 }
}

data "rdsgate_proxy_config" "proxy" {
  databases = [
    { name = "orders", engine = "postgres", kind = "instance", region = "us-east-1", endpoint = "orders.abc.us-east-1.rds.amazonaws.com", port = 5432, db_users = ["app"] },
    { name = "shop", engine = "mysql", kind = "instance", region = "us-east-1", endpoint = "shop.abc.us-east-1.rds.amazonaws.com", port = 3306, db_users = ["app"] },
    { name = "ledger", engine = "postgres", kind = "instance", region = "us-east-1", endpoint = "ledger.abc.us-east-1.rds.amazonaws.com", port = 5432, db_users = ["app"] },
  ]
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
  ports     = rdsgate_listener_ports.proxy.ports
}
