# The proxy's configuration, a systemd unit and cloud-init user data, for
# databases whose permissions sit on the proxy's own role.
data "rdsgate_databases" "prod" {
  tags     = { env = "prod" }
  db_users = ["app"]
}

data "rdsgate_proxy_config" "proxy" {
  databases = data.rdsgate_databases.prod.databases
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
}

output "user_data" {
  value = data.rdsgate_proxy_config.proxy.cloud_init
}
