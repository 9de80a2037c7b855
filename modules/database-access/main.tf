# The proxy's role, its own permissions, IAM authentication on every
# declared database, and the rds-db:connect permissions of all of them
# packed into size-aware policy shards.

resource "rdsgate_access_role" "proxy" {
  name              = var.name
  description       = "rdsgate proxy: IAM-authenticated access to RDS and Aurora"
  trusted_services  = var.trusted_services
  trusted_role_arns = length(var.trusted_role_arns) > 0 ? var.trusted_role_arns : null
  tags              = var.tags
}

resource "rdsgate_bootstrap_policy" "proxy" {
  role   = rdsgate_access_role.proxy.name
  types  = var.types
  manual = var.manual
}

resource "rdsgate_database" "this" {
  for_each        = var.databases
  name            = each.key
  identifier      = each.value.identifier
  kind            = each.value.kind
  region          = each.value.region
  db_users        = each.value.db_users
  labels          = each.value.labels
  enable_iam_auth = each.value.enable_iam_auth
}

data "rdsgate_databases" "found" {
  count    = var.discover == null ? 0 : 1
  types    = var.discover.types
  regions  = var.discover.regions
  tags     = var.discover.tags
  db_users = var.discover.db_users
}

locals {
  declared = [for name, d in rdsgate_database.this : {
    name           = d.name
    identifier     = d.identifier
    engine         = d.engine
    engine_version = d.engine_version
    kind           = d.kind
    resource_id    = d.resource_id
    region         = d.region
    account_id     = d.account_id
    endpoint       = d.endpoint
    port           = d.port
    db_users       = d.db_users
    labels         = d.labels
  }]
  discovered = var.discover == null ? [] : data.rdsgate_databases.found[0].databases
  databases  = concat(local.declared, var.inventory, local.discovered)
}

resource "rdsgate_policy_shards" "this" {
  base_role       = rdsgate_access_role.proxy.name
  databases       = local.databases
  max_managed     = var.max_managed
  max_shard_roles = var.max_shard_roles
  external_id     = var.external_id

  # The role's other policies are read from IAM at plan time; the bootstrap
  # policy is written in this same apply, so it is reserved by name and size.
  pending_inline_policies = {
    (rdsgate_bootstrap_policy.proxy.policy_name) = rdsgate_bootstrap_policy.proxy.size
  }

  # The proxy's sts:AssumeRole on its shard roles comes from the bootstrap
  # policy; with it in place first, apply's chain check passes.
  depends_on = [rdsgate_bootstrap_policy.proxy]
}
