# Let the proxy assume a role in another account that holds rds-db:connect
# for that account's databases. The role's other trust statements stay.
resource "rdsgate_role_trust" "analytics" {
  role_name         = "analytics-db-connect"
  trusted_role_arns = ["arn:aws:iam::123456789012:role/rdsgate-proxy"]
  external_id       = "rdsgate-analytics"
}
