# rds-db:connect for every database, packed into the proxy role's inline
# policy, its managed policies, then shard roles, each within IAM's quotas.
resource "rdsgate_access_role" "proxy" {
  name             = "rdsgate-proxy"
  trusted_services = ["ec2.amazonaws.com"]
}

resource "rdsgate_bootstrap_policy" "proxy" {
  role = rdsgate_access_role.proxy.name
}

resource "rdsgate_database" "orders" {
  identifier = "orders-prod"
  db_users   = ["app", "readonly"]
}

resource "rdsgate_policy_shards" "fleet" {
  base_role = rdsgate_access_role.proxy.name
  # The role's other policies are read from IAM at plan time; the bootstrap
  # policy, written in this apply, is reserved before it exists.
  pending_inline_policies = {
    (rdsgate_bootstrap_policy.proxy.policy_name) = rdsgate_bootstrap_policy.proxy.size
  }
  databases = [for d in [rdsgate_database.orders] : {
    name        = d.name
    engine      = d.engine
    kind        = d.kind
    resource_id = d.resource_id
    region      = d.region
    account_id  = d.account_id
    endpoint    = d.endpoint
    port        = d.port
    db_users    = d.db_users
  }]
  depends_on = [rdsgate_bootstrap_policy.proxy]
}

output "shards" {
  value = rdsgate_policy_shards.fleet.stats
}
