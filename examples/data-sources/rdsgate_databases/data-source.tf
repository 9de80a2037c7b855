# Every production database with IAM authentication on, in two regions.
data "rdsgate_databases" "prod" {
  regions  = ["eu-west-1", "us-east-1"]
  tags     = { env = "prod" }
  db_users = ["app"]
}

output "cannot_serve" {
  value = data.rdsgate_databases.prod.skipped
}
