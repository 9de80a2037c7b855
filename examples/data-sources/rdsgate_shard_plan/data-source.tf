# Check in CI that the fleet still fits, without writing anything.
data "rdsgate_databases" "prod" {
  tags     = { env = "prod" }
  db_users = ["app"]
}

data "rdsgate_shard_plan" "check" {
  base_role   = "rdsgate-proxy"
  max_managed = 10
  databases   = data.rdsgate_databases.prod.databases
}

output "plan" {
  value = data.rdsgate_shard_plan.check.table
}
