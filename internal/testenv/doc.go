// Package testenv starts the real parts rdsgate's tests run against: moto's
// server for IAM, STS and RDS, and a proxy in front of it that injects the
// faults AWS has (throttling, 5xx answers, refused writes). Tests fail, rather
// than skip, when a part is missing: .ci/run installs them.
package testenv
