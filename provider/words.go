package provider

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rdsgate/rdsgate/bootstrap"
)

// The planner and the AWS layer explain themselves in the CLI's words
// (--reserved-inline, --max-shard-roles). A Terraform user sets attributes,
// not flags, so every error the provider shows passes through tfText, which
// names the attribute instead. words_test.go finds every flag those layers
// may print and fails when one has no Terraform wording here.

// tfWords maps a CLI phrase to the provider's.
var tfWords = strings.NewReplacer(
	"plan again with --reserved-inline", "set reserved_inline =",
	"plan again with --reserved-managed", "set reserved_managed =",
	"give --role NAME or --user NAME", "give role or user",
	"use --manual", "set manual = true",
	"--assume-role-arn", "assume_role_arns:",
	"use --cluster ", "set kind = \"cluster\" and identifier = ",
	"check --region", "check region",
	"--types ", "types: ",
	"--regions:", "regions:",
	"--reserved-inline", "reserved_inline",
	"--reserved-managed", "reserved_managed",
	"--max-shard-roles", "max_shard_roles",
	"--max-managed", "max_managed",
	"(without --previous)", "(without the plan in the resource's state)",
	"(shards plan with AWS credentials, or --previous)", "(the resource does, from its state)",
	"pass --region", "set region in the provider block",
	"--profile/AWS_PROFILE", "the provider's profile or AWS_PROFILE",
	"(--profile)", "(the provider's profile or assume_role)",
	"(rdsgate shards plan --format json)", "(terraform show -json has it)",
	"run again when it has finished, or wait longer with --lease-wait", "run terraform apply again when it has finished",
)

// quotaFlag matches the quota flags that have no attribute: the provider
// plans with AWS's default quotas, checked against the account's at apply.
var quotaFlag = regexp.MustCompile(`plan again with --(policy-size|role-policy-size|user-policy-size|trust-policy-size) (\d+)`)

// tfText is err's message in the provider's words.
func tfText(err error) string {
	if re := (*bootstrap.ReservationError)(nil); errors.As(err, &re) {
		return reservationText(re, false)
	}
	msg := quotaFlag.ReplaceAllString(err.Error(),
		"this account's quota is below AWS's default, which the provider plans with: ask AWS to raise it to the default, or plan with the CLI (rdsgate shards plan --$1 $2)")
	return tfWords.Replace(msg)
}

// reservationText explains a ReservationError in the provider's words:
// automatic reservations were read at plan time, and IAM changed since.
func reservationText(e *bootstrap.ReservationError, automatic bool) string {
	attr, what := "reserved_managed", fmt.Sprintf("%d managed policies outside rdsgate's are attached to %s %s", e.Used, e.Kind, e.Name)
	pending := "pending_managed_policy_arns"
	if e.Inline {
		attr, what = "reserved_inline", fmt.Sprintf("the other inline policies of %s %s use %d characters", e.Kind, e.Name, e.Used)
		pending = "pending_inline_policies"
	}
	if automatic {
		return fmt.Sprintf("%s, but the plan reserved %d (of %d) for them: IAM changed after the plan read it, and would refuse the connect policy. "+
			"Nothing was written. Run terraform apply again to plan with what IAM holds now; if another resource of this configuration "+
			"writes that policy in the same apply, list it in %s so the plan counts it before it exists.", what, e.Reserved, e.Quota, pending)
	}
	return fmt.Sprintf("%s, but %s = %d reserves less (of %d): IAM would refuse the connect policy, and nothing was written. "+
		"Set %s = %d, or remove %s and the provider reads it from IAM at plan time.", what, attr, e.Reserved, e.Quota, attr, e.Used, attr)
}
