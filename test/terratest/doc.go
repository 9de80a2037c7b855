// Package terratest applies rdsgate's Terraform modules and the complete
// example with the real terraform binary, offline (the provider built from
// this checkout, served by a filesystem mirror and dev_overrides), against
// moto's server, and checks what IAM and RDS hold through the AWS SDK.
//
// It is a module of its own so terratest's dependencies do not move the
// provider's pins: `make e2e`, or `cd test/terratest && go test ./...`.
package terratest
