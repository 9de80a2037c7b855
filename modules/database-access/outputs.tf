output "proxy_role_name" {
  description = "Name of the proxy's role."
  value       = rdsgate_access_role.proxy.name
}

output "proxy_role_arn" {
  description = "ARN of the proxy's role: the instance profile or task role the proxy runs as."
  value       = rdsgate_access_role.proxy.arn
}

output "shard_role_arns" {
  description = "ARNs of the shard roles the proxy reaches by role chaining."
  value       = rdsgate_policy_shards.this.shard_role_arns
}

output "database_roles" {
  description = "For each database, the role whose policy grants it (the proxy's role or a shard role)."
  value       = rdsgate_policy_shards.this.database_roles
}

output "databases" {
  description = "Every database served, in the form rdsgate_proxy_config and the proxy module take."
  value       = local.databases
}

output "external_id" {
  description = "External id of the shard roles."
  value       = var.external_id
}

output "stats" {
  description = "Databases, policy documents (and their lower bound), principals, and databases moved by the last change."
  value       = rdsgate_policy_shards.this.stats
}

output "bootstrap_policy_json" {
  description = "The proxy's own permissions."
  value       = rdsgate_bootstrap_policy.proxy.policy_json
}
