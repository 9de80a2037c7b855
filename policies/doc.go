// Package policies is rdsgate's domain model for AWS IAM, written against the
// standard library alone: policy documents and the size IAM counts for them,
// ARNs, the IAM quotas that bound what fits, the inventory of databases, the
// bootstrap permissions of the proxy and the size-aware shard planner that
// spreads rds-db:connect permissions over inline and managed policies and
// roles.
//
// Nothing in this package talks to AWS. Everything it produces is
// deterministic: the same input gives byte-identical output, so plans can be
// diffed, reviewed and checked in.
package policies
