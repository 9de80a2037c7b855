# The role's name; the role must carry the rdsgate:managed tag.
terraform import rdsgate_access_role.proxy rdsgate-proxy
