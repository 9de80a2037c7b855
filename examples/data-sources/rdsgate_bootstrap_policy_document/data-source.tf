# What print-iam prints, for review; no AWS call.
data "rdsgate_bootstrap_policy_document" "proxy" {
  role       = "rdsgate-proxy"
  account_id = "123456789012"
  types      = ["rds"]
  manual     = true
}

output "bootstrap_policy" {
  value = data.rdsgate_bootstrap_policy_document.proxy.json
}
