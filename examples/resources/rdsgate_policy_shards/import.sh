# role/NAME, user/NAME or the principal's ARN; IAM's current documents
# become the plan in effect.
terraform import rdsgate_policy_shards.fleet role/rdsgate-proxy
