terraform {
  required_version = ">= 1.5"
  required_providers {
    rdsgate = {
      source = "rdsgate/rdsgate"
    }
  }
}
