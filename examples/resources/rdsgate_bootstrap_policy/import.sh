# role/NAME or user/NAME
terraform import rdsgate_bootstrap_policy.proxy role/rdsgate-proxy
