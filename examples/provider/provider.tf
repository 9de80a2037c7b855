# Credentials and region come from the AWS SDK's chain (AWS_PROFILE,
# AWS_ACCESS_KEY_ID, instance and container roles, ...), as for the AWS provider.
provider "rdsgate" {
  region = "eu-west-1"

  # Optional: act as a deployment role.
  assume_role {
    role_arn     = "arn:aws:iam::123456789012:role/terraform-deploy"
    session_name = "rdsgate-terraform"
  }

  # Optional: tags on every role rdsgate creates.
  default_tags {
    tags = { "managed-by" = "terraform" }
  }
}
