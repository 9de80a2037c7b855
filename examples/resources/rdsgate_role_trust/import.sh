# ROLE_NAME/SID
terraform import rdsgate_role_trust.analytics analytics-db-connect/RdsgateTrust
