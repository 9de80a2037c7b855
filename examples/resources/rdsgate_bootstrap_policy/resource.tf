# What `rdsgate bootstrap create-iam` does: the proxy may manage its own
# connect policies (capped by a permissions boundary) and assume its shard roles.
resource "rdsgate_access_role" "proxy" {
  name             = "rdsgate-proxy"
  trusted_services = ["ec2.amazonaws.com"]
}

resource "rdsgate_bootstrap_policy" "proxy" {
  role  = rdsgate_access_role.proxy.name
  types = ["rds", "rds-proxy"]
}
