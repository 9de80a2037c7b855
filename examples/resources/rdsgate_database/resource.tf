# Turn IAM authentication on for an RDS instance and read what the shard
# planner and the proxy need (resource id, endpoint, port).
resource "rdsgate_database" "orders" {
  identifier = "orders-prod"
  db_users   = ["app", "readonly"]
  labels     = { env = "prod", team = "checkout" }
}

# An Aurora cluster: IAM users are authorized on the cluster.
resource "rdsgate_database" "ledger" {
  identifier = "ledger"
  kind       = "cluster"
  db_users   = ["ledger_app"]
}
