variable "databases" {
  description = "The databases the proxy serves: module.database_access.databases (each needs endpoint and port)."
  type = list(object({
    name           = string
    identifier     = optional(string)
    engine         = string
    engine_version = optional(string)
    kind           = string
    resource_id    = optional(string)
    region         = string
    account_id     = optional(string)
    endpoint       = string
    port           = number
    db_users       = list(string)
    labels         = optional(map(string))
  }))
  validation {
    condition     = length(var.databases) > 0
    error_message = "The proxy needs at least one database."
  }
}

variable "database_roles" {
  description = "Role per database: module.database_access.database_roles."
  type        = map(string)
  default     = {}
}

variable "proxy_role_arn" {
  description = "The proxy's own role: databases granted to it are reached without role chaining."
  type        = string
  default     = ""
}

variable "external_id" {
  description = "External id of the shard roles."
  type        = string
  default     = ""
}

variable "ca_bundle" {
  description = "Path of the RDS CA bundle on the proxy's host (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)."
  type        = string
  default     = "/etc/rdsgate/global-bundle.pem"
  validation {
    condition     = startswith(var.ca_bundle, "/")
    error_message = "ca_bundle must be an absolute path on the proxy's host."
  }
}

variable "region" {
  description = "Default region for IAM tokens."
  type        = string
  default     = ""
}

variable "listen_host" {
  description = "Address of the sidecar listeners (127.0.0.1), or unix:/dir for unix sockets."
  type        = string
  default     = "127.0.0.1"
}

variable "ports" {
  description = "Listener ports pinned by database name. Unpinned databases keep the port they were given (rdsgate_listener_ports); new ones take the free ports from first_port."
  type        = map(number)
  default     = {}
}

variable "first_port" {
  description = "Where new databases' listener ports start; a database keeps its port while it exists."
  type        = number
  default     = 15432
  validation {
    condition     = var.first_port >= 1 && var.first_port <= 65535
    error_message = "first_port must be a TCP port."
  }
}

variable "health_address" {
  description = "Address of /startup, /readiness, /liveness and /metrics."
  type        = string
  default     = "127.0.0.1:9187"
}

variable "binary_url" {
  description = "Where cloud-init downloads the rdsgate binary from."
  type        = string
  default     = "https://github.com/rdsgate/rdsgate/releases/latest/download/rdsgate-linux-amd64"
}

variable "addresses" {
  description = "Where to connect instead of a database's endpoint, by name (host:port of a tunnel or port forward); tokens and TLS still name the endpoint."
  type        = map(string)
  default     = {}
}

variable "assume_role_arn" {
  description = "A role the proxy assumes first, when it does not run as its role (on a laptop, say): usually the proxy's role."
  type        = string
  default     = ""
}

variable "gateway" {
  description = "Run as a gateway (clients prove who they are with certificates or AWS IAM): listeners, TLS files on the host, client_ca and/or iam_audience."
  type = object({
    listen_postgres = optional(string)
    listen_mysql    = optional(string)
    listen_api      = optional(string)
    tls_cert        = string
    tls_key         = string
    client_ca       = optional(string)
    iam_audience    = optional(string)
    sts_endpoint    = optional(string)
    rbac_file       = optional(string)
  })
  default = null
}

variable "rbac_rules" {
  description = "Who may reach what through the gateway (deny by default, an explicit deny wins)."
  type = list(object({
    name       = string
    effect     = optional(string)
    identities = list(string)
    databases  = optional(list(string))
    labels     = optional(map(string))
    db_users   = optional(list(string))
    db_names   = optional(list(string))
  }))
  default = []
}

variable "audit_log" {
  description = "Audit trail: a file path on the host, or - for standard output; empty for none."
  type        = string
  default     = ""
}

variable "kubernetes" {
  description = "Run the gateway as a fleet on Kubernetes (needs gateway): image, and optionally namespace, name, iam_role_arn (default proxy_role_arn), replicas, max_replicas, service_type. Output kubernetes_manifests holds the manifests."
  type = object({
    image        = string
    namespace    = optional(string)
    name         = optional(string)
    iam_role_arn = optional(string)
    replicas     = optional(number)
    max_replicas = optional(number)
    service_type = optional(string)
  })
  default = null
}
