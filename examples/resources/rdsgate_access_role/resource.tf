# The proxy's own role, assumed by EC2 instances (its instance profile) and,
# for people running the proxy locally, by an operator role.
resource "rdsgate_access_role" "proxy" {
  name              = "rdsgate-proxy"
  description       = "rdsgate proxy"
  trusted_services  = ["ec2.amazonaws.com"]
  trusted_role_arns = ["arn:aws:iam::123456789012:role/ops"]
  tags              = { team = "platform" }
}
