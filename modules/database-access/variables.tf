variable "name" {
  description = "Name of the proxy's IAM role. Shard roles are named after it (NAME-shard-001, ...) under the path /rdsgate/NAME/."
  type        = string
  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,52}$", var.name))
    error_message = "name must be 1 to 52 of A-Za-z0-9+=,.@_- (shard role names add up to 12 characters to it, and IAM allows 64)."
  }
}

variable "databases" {
  description = <<-EOT
    Databases to serve, by rdsgate name. For each, IAM database authentication is turned on and its
    resource id, endpoint and port are read from RDS. kind is "instance" (default) or "cluster" (Aurora);
    db_users are the database users the proxy may connect as (["*"] for any).
  EOT
  type = map(object({
    identifier      = string
    kind            = optional(string, "instance")
    region          = optional(string)
    db_users        = list(string)
    labels          = optional(map(string), {})
    enable_iam_auth = optional(bool, true)
  }))
  default = {}
  validation {
    condition     = alltrue([for d in values(var.databases) : contains(["instance", "cluster"], d.kind)])
    error_message = "Each database's kind must be \"instance\" or \"cluster\"."
  }
  validation {
    condition     = alltrue([for d in values(var.databases) : length(d.db_users) > 0])
    error_message = "Each database needs at least one db_users entry (or [\"*\"] for any user)."
  }
}

variable "inventory" {
  description = <<-EOT
    Databases already known by resource id, in the inventory format of `rdsgate discover` (for example
    jsondecode(file("inventory.json")).databases). Nothing is read from RDS for them and IAM
    authentication is not touched.
  EOT
  type = list(object({
    name           = string
    identifier     = optional(string)
    engine         = string
    engine_version = optional(string)
    kind           = string
    resource_id    = string
    region         = string
    account_id     = string
    endpoint       = optional(string)
    port           = optional(number)
    db_users       = list(string)
    labels         = optional(map(string))
  }))
  default = []
}

variable "discover" {
  description = "Also serve the databases found in RDS: regions and tags to look in, and the users of databases without an rdsgate:db-users tag."
  type = object({
    types    = optional(list(string), ["rds", "aurora", "rds-proxy"])
    regions  = optional(list(string))
    tags     = optional(map(string), {})
    db_users = optional(list(string), [])
  })
  default = null
}

variable "trusted_services" {
  description = "Services that run the proxy and may assume its role."
  type        = list(string)
  default     = ["ec2.amazonaws.com"]
}

variable "trusted_role_arns" {
  description = "Roles or users that may assume the proxy's role (for a proxy run elsewhere, or by people)."
  type        = list(string)
  default     = []
}

variable "types" {
  description = "What the proxy serves: rds, rds-proxy, redshift, redshift-serverless."
  type        = list(string)
  default     = ["rds"]
  validation {
    condition     = length(setsubtract(var.types, ["rds", "rds-proxy", "redshift", "redshift-serverless"])) == 0
    error_message = "types may hold rds, rds-proxy, redshift and redshift-serverless."
  }
}

variable "max_managed" {
  description = "Managed policies per role: 10 by default, up to 20 where the account's quota was raised."
  type        = number
  default     = 10
  validation {
    condition     = var.max_managed >= 1 && var.max_managed <= 20
    error_message = "max_managed must be between 1 and 20 (IAM's hard limit)."
  }
}

variable "max_shard_roles" {
  description = "How many shard roles the plan may create."
  type        = number
  default     = 10
  validation {
    condition     = var.max_shard_roles >= 0 && var.max_shard_roles <= 999
    error_message = "max_shard_roles must be between 0 and 999."
  }
}

variable "external_id" {
  description = "External id the shard roles require of the proxy."
  type        = string
  default     = ""
}

variable "manual" {
  description = "Give the proxy no IAM write permission at all (Terraform manages the connect policies)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of the proxy's role."
  type        = map(string)
  default     = {}
}
