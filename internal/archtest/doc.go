// Package archtest holds the test that keeps rdsgate's dependency direction:
// policies uses the standard library alone, bootstrap may use policies,
// proxyd stands on its own, and provider and cmd are thin adapters on top.
package archtest
