output "config_json" {
  description = "The proxy's configuration file: write it to /etc/rdsgate/proxy.json and run `rdsgate proxy start --config /etc/rdsgate/proxy.json`."
  value       = data.rdsgate_proxy_config.this.config_json
}

output "systemd_unit" {
  description = "A hardened systemd unit that runs the proxy."
  value       = data.rdsgate_proxy_config.this.systemd_unit
}

output "cloud_init" {
  description = "cloud-init user data that installs and starts the proxy (aws_launch_template.user_data = base64encode(...))."
  value       = data.rdsgate_proxy_config.this.cloud_init
}

output "listeners" {
  description = "Where each database listens: connect with psql \"host=127.0.0.1 port=PORT user=app dbname=...\"."
  value       = data.rdsgate_proxy_config.this.listeners
}

output "rbac_json" {
  description = "The gateway's RBAC file (cloud_init writes it)."
  value       = data.rdsgate_proxy_config.this.rbac_json
}

output "kubernetes_manifests" {
  description = "With var.kubernetes: the fleet's ServiceAccount, ConfigMap, Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler by file name (JSON for kubectl apply -f, or kubernetes_manifest resources via jsondecode)."
  value       = data.rdsgate_proxy_config.this.kubernetes_manifests
}
