# The whole setup: the proxy's role and permissions, IAM authentication on
# each database, sharded rds-db:connect policies, and the proxy's
# configuration. `make demo` applies it against a local AWS emulator;
# against AWS, leave aws_endpoint unset.

terraform {
  required_version = ">= 1.5"
  required_providers {
    rdsgate = {
      source = "rdsgate/rdsgate"
    }
  }
}

variable "region" {
  description = "Region of the databases."
  type        = string
  default     = "us-east-1"
}

variable "aws_endpoint" {
  description = "URL of an AWS emulator (moto's server) for IAM, STS and RDS; null for AWS itself."
  type        = string
  default     = null
}

variable "proxy_name" {
  description = "Name of the proxy's role."
  type        = string
  default     = "rdsgate-proxy"
}

variable "databases" {
  description = "The databases, by rdsgate name."
  type = map(object({
    identifier = string
    kind       = optional(string, "instance")
    db_users   = list(string)
    labels     = optional(map(string), {})
  }))
  default = {
    orders = { identifier = "orders", db_users = ["app"] }
  }
}

variable "inventory" {
  description = "More databases, known by resource id (the format of `rdsgate discover`)."
  type        = any
  default     = []
}

variable "trusted_role_arns" {
  description = "Who else may assume the proxy's role (a person running the proxy locally)."
  type        = list(string)
  default     = []
}

variable "ca_bundle" {
  description = "The RDS CA bundle on the proxy's host."
  type        = string
  default     = "/etc/rdsgate/global-bundle.pem"
}

variable "addresses" {
  description = "Where the proxy connects instead of a database's endpoint, by name (a tunnel or port forward)."
  type        = map(string)
  default     = {}
}

variable "proxy_assumes_role" {
  description = "The proxy runs outside its role (a laptop) and assumes it first."
  type        = bool
  default     = false
}

variable "health_address" {
  description = "The proxy's health and metrics address."
  type        = string
  default     = "127.0.0.1:9187"
}

variable "first_port" {
  description = "First sidecar port."
  type        = number
  default     = 15432
}

provider "rdsgate" {
  region = var.region
  endpoints {
    iam = var.aws_endpoint
    sts = var.aws_endpoint
    rds = var.aws_endpoint
  }
}

module "database_access" {
  source            = "../../modules/database-access"
  name              = var.proxy_name
  databases         = var.databases
  inventory         = var.inventory
  trusted_role_arns = var.trusted_role_arns
}

module "proxy" {
  source          = "../../modules/proxy"
  databases       = module.database_access.databases
  database_roles  = module.database_access.database_roles
  proxy_role_arn  = module.database_access.proxy_role_arn
  external_id     = module.database_access.external_id
  region          = var.region
  ca_bundle       = var.ca_bundle
  first_port      = var.first_port
  health_address  = var.health_address
  addresses       = var.addresses
  assume_role_arn = var.proxy_assumes_role ? module.database_access.proxy_role_arn : ""
}

output "proxy_role_arn" {
  description = "The role the proxy runs as."
  value       = module.database_access.proxy_role_arn
}

output "shard_role_arns" {
  description = "Shard roles the proxy reaches by role chaining."
  value       = module.database_access.shard_role_arns
}

output "stats" {
  description = "The shard plan in numbers."
  value       = module.database_access.stats
}

output "databases" {
  description = "The databases served, with their resource ids."
  value       = module.database_access.databases
}

output "database_roles" {
  description = "The role whose policy grants each database."
  value       = module.database_access.database_roles
}

output "listeners" {
  description = "Where each database listens."
  value       = module.proxy.listeners
}

output "proxy_config" {
  description = "The proxy's configuration file."
  value       = module.proxy.config_json
}
