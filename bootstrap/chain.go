package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/policies"
)

// ReadPolicies reads everything IAM evaluates for a principal given by ARN:
// its inline policies, the default version of every attached managed
// policy, its permissions boundary and (for a role) its trust policy. An
// assumed-role session ARN is read as its role. nil when it does not exist.
func ReadPolicies(ctx context.Context, api IAMAPI, arn string) (*policies.PrincipalPolicies, *ObservedPrincipal, error) {
	n, err := policies.ParseIAMARN(arn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", policies.ErrInvalidInput, err)
	}
	kind := policies.PrincipalRole
	name := n.Name
	switch n.Type {
	case "user":
		kind = policies.PrincipalUser
	case "assumed-role":
		name, _, _ = strings.Cut(n.Name, "/")
	case "role":
	default:
		return nil, nil, fmt.Errorf("%w: %s is not a role or user", policies.ErrInvalidInput, arn)
	}
	p, err := ReadPrincipal(ctx, api, kind, name)
	if err != nil || p == nil {
		return nil, nil, err
	}
	pp := &policies.PrincipalPolicies{ARN: p.ARN, Trust: p.Trust}
	for _, k := range slices.Sorted(maps.Keys(p.Inline)) {
		pp.Identity = append(pp.Identity, p.Inline[k])
	}
	for _, a := range p.Attached {
		d, err := readDefaultVersion(ctx, api, a)
		if err != nil {
			return nil, nil, err
		}
		pp.Identity = append(pp.Identity, d)
	}
	if p.Boundary != "" {
		if pp.Boundary, err = readDefaultVersion(ctx, api, p.Boundary); err != nil {
			return nil, nil, err
		}
	}
	return pp, p, nil
}

func readDefaultVersion(ctx context.Context, api IAMAPI, arn string) (*policies.Document, error) {
	out, err := api.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return nil, explain(err, "iam:GetPolicy", "policy "+arn)
	}
	v, err := api.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: out.Policy.DefaultVersionId})
	if err != nil {
		return nil, explain(err, "iam:GetPolicyVersion", "policy "+arn)
	}
	return decodeDocument(v.PolicyVersion.Document, "policy "+arn)
}

// Hop is one role assumption of a chain and what stands in its way.
type Hop struct {
	From, To string
	OK       bool
	// Problems say what blocks the hop; Fixes say, for each, what to add and
	// where, as an expert would.
	Problems []string
	Fixes    []string
}

// MaxChainHops is how many role assumptions rdsgate chains: the base into a
// shard role, or through one intermediate role in another account.
const MaxChainHops = 2

// CheckChain checks a role chain before it is used: for each hop, the
// caller's identity policies must allow sts:AssumeRole on the target (with
// no explicit deny and within its permissions boundary), and the target's
// trust policy must name the caller. IAM needs both; an emulator like moto
// checks neither, so rdsgate evaluates them itself.
func CheckChain(ctx context.Context, api IAMAPI, chain []string, externalID string) ([]Hop, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("%w: a chain needs a caller and at least one role", policies.ErrInvalidInput)
	}
	if len(chain)-1 > MaxChainHops {
		return nil, fmt.Errorf("%w: %d hops; rdsgate chains at most %d (and each chained session lasts at most an hour)", policies.ErrInvalidInput, len(chain)-1, MaxChainHops)
	}
	ctxKeys := map[string]string{}
	if externalID != "" {
		ctxKeys["sts:ExternalId"] = externalID
	}
	var hops []Hop
	missing := map[string]bool{} // reported already, by the hop before
	for i := 0; i+1 < len(chain); i++ {
		from, to := chain[i], chain[i+1]
		h := Hop{From: from, To: to}
		src, srcObs, err := ReadPolicies(ctx, api, from)
		if err != nil {
			return nil, err
		}
		dst, _, err := ReadPolicies(ctx, api, to)
		if err != nil {
			return nil, err
		}
		switch {
		case src == nil && missing[from]:
			h.Problems = append(h.Problems, fmt.Sprintf("not checked: %s does not exist (see the hop before)", from))
		case src == nil && i == 0:
			h.Problems = append(h.Problems, fmt.Sprintf("the caller %s is not an IAM role or user rdsgate can read", from))
			h.Fixes = append(h.Fixes, "check that the credentials are the ones you meant (the identity check above), and that they may call iam:GetRole or iam:GetUser on themselves")
		case src == nil:
			h.Problems = append(h.Problems, fmt.Sprintf("%s does not exist", from))
			h.Fixes = append(h.Fixes, fmt.Sprintf("create %s, or fix the ARN", from))
		}
		if dst == nil {
			missing[to] = true
			h.Problems = append(h.Problems, fmt.Sprintf("%s does not exist", to))
			h.Fixes = append(h.Fixes, fmt.Sprintf("create %s (rdsgate shards apply creates shard roles), or fix the ARN", to))
		}
		if src != nil && dst != nil {
			caller := src.ARN
			req := policies.Request{Action: "sts:AssumeRole", Resource: to, Context: ctxKeys}
			allow := fmt.Sprintf(`{"Effect":"Allow","Action":"sts:AssumeRole","Resource":%q}`, to)
			switch policies.Evaluate(src.Identity, req) {
			case policies.ExplicitDeny:
				h.Problems = append(h.Problems, fmt.Sprintf("a Deny statement in the policies of %s forbids sts:AssumeRole on %s", caller, to))
				h.Fixes = append(h.Fixes, fmt.Sprintf("remove or narrow that Deny in the policies of %s", caller))
			case policies.ImplicitDeny:
				h.Problems = append(h.Problems, fmt.Sprintf("no policy of %s allows sts:AssumeRole on %s", caller, to))
				h.Fixes = append(h.Fixes, fmt.Sprintf("add this statement to a policy of %s (for example its inline policy %s): %s", caller, policies.InlinePolicyName, allow))
			}
			if src.Boundary != nil && policies.Evaluate([]*policies.Document{src.Boundary}, req) != policies.Allowed {
				h.Problems = append(h.Problems, fmt.Sprintf("the permissions boundary %s of %s does not allow sts:AssumeRole on %s", srcObs.Boundary, caller, to))
				h.Fixes = append(h.Fixes, fmt.Sprintf("add this statement to the boundary policy %s (as a new default version): %s", srcObs.Boundary, allow))
			}
			trustReq := policies.Request{Action: "sts:AssumeRole", Principal: caller, Context: ctxKeys}
			if dst.Trust == nil || policies.Evaluate([]*policies.Document{dst.Trust}, trustReq) != policies.Allowed {
				st := fmt.Sprintf(`{"Effect":"Allow","Principal":{"AWS":%q},"Action":"sts:AssumeRole"`, caller)
				if externalID != "" {
					st += fmt.Sprintf(`,"Condition":{"StringEquals":{"sts:ExternalId":%q}}`, externalID)
				}
				st += "}"
				h.Problems = append(h.Problems, fmt.Sprintf("the trust policy of %s does not let %s assume it", to, caller))
				name := to[strings.LastIndexByte(to, '/')+1:]
				h.Fixes = append(h.Fixes, fmt.Sprintf("add this statement to the trust policy of %s (aws iam update-assume-role-policy --role-name %s --policy-document file://trust.json): %s", to, name, st))
			}
		}
		h.OK = len(h.Problems) == 0
		hops = append(hops, h)
	}
	return hops, nil
}
