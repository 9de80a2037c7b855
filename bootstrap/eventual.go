package bootstrap

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// DefaultConsistencyWait is how long rdsgate waits for IAM to show what it
// has just created, as terraform-provider-aws does.
const DefaultConsistencyWait = 2 * time.Minute

type noteKey struct{}

// WithNotes returns a context whose IAM waits and retries are told to note:
// a run that waits says why.
func WithNotes(ctx context.Context, note func(string)) context.Context {
	return context.WithValue(ctx, noteKey{}, note)
}

func noteFrom(ctx context.Context, msg string) {
	if f, ok := ctx.Value(noteKey{}).(func(string)); ok && f != nil {
		f(msg)
	}
}

// eventually is IAM as it really behaves: eventually consistent. A role or
// policy just created can be missing from reads (and writes that name it)
// for seconds, and a trust policy naming a principal created moments ago is
// refused as "Invalid principal in policy". It retries those, with backoff,
// for up to wait: NoSuchEntity only for entities this process created (or
// was told exist) within that time, so a real typo fails at once.
type eventually struct {
	IAMAPI
	wait  time.Duration
	mu    sync.Mutex
	young map[string]time.Time // "role/NAME", "policy/ARN"
}

func newEventually(api IAMAPI, wait time.Duration) *eventually {
	if wait == 0 {
		wait = DefaultConsistencyWait
	}
	return &eventually{IAMAPI: api, wait: wait, young: map[string]time.Time{}}
}

func (e *eventually) born(key string) {
	e.mu.Lock()
	e.young[key] = time.Now()
	e.mu.Unlock()
}

func (e *eventually) isYoung(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.young[key]
	return ok && time.Since(t) < e.wait
}

func invalidPrincipal(err error) bool {
	return errorCode(err) == "MalformedPolicyDocument" && strings.Contains(strings.ToLower(errorMessage(err)), "invalid principal")
}

// catchUp runs call until it succeeds, fails for another reason, or wait has
// passed; retryable says whether an error is IAM catching up.
func catchUp[T any](ctx context.Context, e *eventually, what string, retryable func(error) bool, call func() (T, error)) (T, error) {
	start := time.Now()
	delay := 250 * time.Millisecond
	told := false
	for {
		out, err := call()
		if err == nil || !retryable(err) || time.Since(start)+delay > e.wait {
			if err != nil && told {
				err = fmt.Errorf("%w (still so after waiting %s for IAM to catch up)", err, time.Since(start).Round(time.Second))
			}
			return out, err
		}
		if !told {
			noteFrom(ctx, fmt.Sprintf("IAM does not show %s yet (%s): IAM is eventually consistent, waiting up to %s", what, errorCode(err), e.wait))
			told = true
		}
		if err := sleep(ctx, delay); err != nil {
			return out, err
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// stateWait is how long a read waits for an entity Terraform's state says
// exists: a plan right after an apply reads what IAM may not show yet.
const stateWait = 15 * time.Second

type stateKey struct{}

// InState marks reads of entities that Terraform's state says exist: a
// NoSuchEntity is retried for a short while, as IAM may not show an entity
// created moments ago; an entity really deleted by hand is reported after
// that wait.
func InState(ctx context.Context) context.Context { return context.WithValue(ctx, stateKey{}, true) }

// missing says whether a NoSuchEntity for key is IAM catching up.
func (e *eventually) missing(ctx context.Context, key string) func(error) bool {
	start := time.Now()
	inState, _ := ctx.Value(stateKey{}).(bool)
	return func(err error) bool {
		if !isNotFound(err) {
			return false
		}
		return e.isYoung(key) || inState && time.Since(start) < min(e.wait, stateWait)
	}
}

func (e *eventually) roleMissing(ctx context.Context, name string) func(error) bool {
	return e.missing(ctx, "role/"+name)
}

func (e *eventually) policyMissing(ctx context.Context, arn string) func(error) bool {
	return e.missing(ctx, "policy/"+arn)
}

// CreateRole retries a trust policy naming a principal IAM does not show
// yet, and marks the role young, also when it already existed (created by
// a run that did not see its own answer).
func (e *eventually) CreateRole(ctx context.Context, in *iam.CreateRoleInput, opts ...func(*iam.Options)) (*iam.CreateRoleOutput, error) {
	out, err := catchUp(ctx, e, "a principal the trust policy of role "+aws.ToString(in.RoleName)+" names", invalidPrincipal,
		func() (*iam.CreateRoleOutput, error) { return e.IAMAPI.CreateRole(ctx, in, opts...) })
	if err == nil || errorCode(err) == "EntityAlreadyExists" {
		e.born("role/" + aws.ToString(in.RoleName))
	}
	return out, err
}

// CreatePolicy marks the policy young.
func (e *eventually) CreatePolicy(ctx context.Context, in *iam.CreatePolicyInput, opts ...func(*iam.Options)) (*iam.CreatePolicyOutput, error) {
	out, err := e.IAMAPI.CreatePolicy(ctx, in, opts...)
	if err == nil && out.Policy != nil {
		e.born("policy/" + aws.ToString(out.Policy.Arn))
	}
	return out, err
}

// NoteCreated tells the wrapper that a role or policy was just created by
// someone else (a Terraform resource), so reads wait for it.
func (c *Clients) NoteCreated(kind, nameOrARN string) {
	if e, ok := c.IAM.(*eventually); ok {
		e.born(kind + "/" + nameOrARN)
	}
}

func (e *eventually) UpdateAssumeRolePolicy(ctx context.Context, in *iam.UpdateAssumeRolePolicyInput, opts ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name+" or a principal its trust policy names", func(err error) bool { return invalidPrincipal(err) || e.roleMissing(ctx, name)(err) },
		func() (*iam.UpdateAssumeRolePolicyOutput, error) {
			return e.IAMAPI.UpdateAssumeRolePolicy(ctx, in, opts...)
		})
}

func (e *eventually) GetRole(ctx context.Context, in *iam.GetRoleInput, opts ...func(*iam.Options)) (*iam.GetRoleOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.GetRoleOutput, error) { return e.IAMAPI.GetRole(ctx, in, opts...) })
}

func (e *eventually) UpdateRole(ctx context.Context, in *iam.UpdateRoleInput, opts ...func(*iam.Options)) (*iam.UpdateRoleOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.UpdateRoleOutput, error) { return e.IAMAPI.UpdateRole(ctx, in, opts...) })
}

func (e *eventually) PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, opts ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.PutRolePolicyOutput, error) { return e.IAMAPI.PutRolePolicy(ctx, in, opts...) })
}

func (e *eventually) ListRolePolicies(ctx context.Context, in *iam.ListRolePoliciesInput, opts ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.ListRolePoliciesOutput, error) { return e.IAMAPI.ListRolePolicies(ctx, in, opts...) })
}

func (e *eventually) ListAttachedRolePolicies(ctx context.Context, in *iam.ListAttachedRolePoliciesInput, opts ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.ListAttachedRolePoliciesOutput, error) {
		return e.IAMAPI.ListAttachedRolePolicies(ctx, in, opts...)
	})
}

func (e *eventually) AttachRolePolicy(ctx context.Context, in *iam.AttachRolePolicyInput, opts ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error) {
	name, arn := aws.ToString(in.RoleName), aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "role "+name+" or policy "+arn, func(err error) bool { return e.roleMissing(ctx, name)(err) || e.policyMissing(ctx, arn)(err) },
		func() (*iam.AttachRolePolicyOutput, error) { return e.IAMAPI.AttachRolePolicy(ctx, in, opts...) })
}

func (e *eventually) TagRole(ctx context.Context, in *iam.TagRoleInput, opts ...func(*iam.Options)) (*iam.TagRoleOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.TagRoleOutput, error) { return e.IAMAPI.TagRole(ctx, in, opts...) })
}

func (e *eventually) UntagRole(ctx context.Context, in *iam.UntagRoleInput, opts ...func(*iam.Options)) (*iam.UntagRoleOutput, error) {
	name := aws.ToString(in.RoleName)
	return catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.UntagRoleOutput, error) { return e.IAMAPI.UntagRole(ctx, in, opts...) })
}

func (e *eventually) PutRolePermissionsBoundary(ctx context.Context, in *iam.PutRolePermissionsBoundaryInput, opts ...func(*iam.Options)) (*iam.PutRolePermissionsBoundaryOutput, error) {
	name, arn := aws.ToString(in.RoleName), aws.ToString(in.PermissionsBoundary)
	return catchUp(ctx, e, "role "+name+" or policy "+arn, func(err error) bool { return e.roleMissing(ctx, name)(err) || e.policyMissing(ctx, arn)(err) },
		func() (*iam.PutRolePermissionsBoundaryOutput, error) {
			return e.IAMAPI.PutRolePermissionsBoundary(ctx, in, opts...)
		})
}

func (e *eventually) GetPolicy(ctx context.Context, in *iam.GetPolicyInput, opts ...func(*iam.Options)) (*iam.GetPolicyOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.GetPolicyOutput, error) { return e.IAMAPI.GetPolicy(ctx, in, opts...) })
}

func (e *eventually) GetPolicyVersion(ctx context.Context, in *iam.GetPolicyVersionInput, opts ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.GetPolicyVersionOutput, error) { return e.IAMAPI.GetPolicyVersion(ctx, in, opts...) })
}

func (e *eventually) ListPolicyTags(ctx context.Context, in *iam.ListPolicyTagsInput, opts ...func(*iam.Options)) (*iam.ListPolicyTagsOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.ListPolicyTagsOutput, error) { return e.IAMAPI.ListPolicyTags(ctx, in, opts...) })
}

func (e *eventually) ListPolicyVersions(ctx context.Context, in *iam.ListPolicyVersionsInput, opts ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.ListPolicyVersionsOutput, error) { return e.IAMAPI.ListPolicyVersions(ctx, in, opts...) })
}

func (e *eventually) CreatePolicyVersion(ctx context.Context, in *iam.CreatePolicyVersionInput, opts ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.CreatePolicyVersionOutput, error) {
		return e.IAMAPI.CreatePolicyVersion(ctx, in, opts...)
	})
}

func (e *eventually) ListEntitiesForPolicy(ctx context.Context, in *iam.ListEntitiesForPolicyInput, opts ...func(*iam.Options)) (*iam.ListEntitiesForPolicyOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	return catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.ListEntitiesForPolicyOutput, error) {
		return e.IAMAPI.ListEntitiesForPolicy(ctx, in, opts...)
	})
}

func (e *eventually) forget(key string) {
	e.mu.Lock()
	delete(e.young, key)
	e.mu.Unlock()
}

// DeleteRole forgets the role once it is gone: a later NoSuchEntity for it is
// the truth, not IAM catching up.
func (e *eventually) DeleteRole(ctx context.Context, in *iam.DeleteRoleInput, opts ...func(*iam.Options)) (*iam.DeleteRoleOutput, error) {
	name := aws.ToString(in.RoleName)
	out, err := catchUp(ctx, e, "role "+name, e.roleMissing(ctx, name), func() (*iam.DeleteRoleOutput, error) { return e.IAMAPI.DeleteRole(ctx, in, opts...) })
	if err == nil || isNotFound(err) {
		e.forget("role/" + name)
	}
	return out, err
}

// DeletePolicy forgets the policy once it is gone.
func (e *eventually) DeletePolicy(ctx context.Context, in *iam.DeletePolicyInput, opts ...func(*iam.Options)) (*iam.DeletePolicyOutput, error) {
	arn := aws.ToString(in.PolicyArn)
	out, err := catchUp(ctx, e, "policy "+arn, e.policyMissing(ctx, arn), func() (*iam.DeletePolicyOutput, error) { return e.IAMAPI.DeletePolicy(ctx, in, opts...) })
	if err == nil || isNotFound(err) {
		e.forget("policy/" + arn)
	}
	return out, err
}
