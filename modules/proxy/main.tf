# The proxy's configuration and how to deploy it: the configuration file,
# a systemd unit, and cloud-init user data for a launch template.

# Each database keeps its listener port from one apply to the next.
resource "rdsgate_listener_ports" "this" {
  databases  = [for d in var.databases : d.name]
  first_port = var.first_port
  pinned     = var.ports
}

data "rdsgate_proxy_config" "this" {
  databases       = var.databases
  database_roles  = var.database_roles
  base_arn        = var.proxy_role_arn
  external_id     = var.external_id
  region          = var.region
  ca_bundle       = var.ca_bundle
  listen_host     = var.listen_host
  first_port      = var.first_port
  ports           = rdsgate_listener_ports.this.ports
  health_address  = var.health_address
  binary_url      = var.binary_url
  addresses       = var.addresses
  assume_role_arn = var.assume_role_arn
  gateway         = var.gateway
  rbac_rules      = length(var.rbac_rules) > 0 ? var.rbac_rules : null
  audit_log       = var.audit_log != "" ? var.audit_log : null
  kubernetes      = var.kubernetes
}
