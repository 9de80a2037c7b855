# [REGION/]instance/IDENTIFIER or [REGION/]cluster/IDENTIFIER
terraform import rdsgate_database.orders eu-west-1/instance/orders-prod
