// Package iamread reads what IAM holds for a base principal and its shard
// roles into iamcheck's independent model, with plain IAM API calls and none
// of rdsgate's own reading code, so a test that judges rdsgate's writes does
// not see IAM through rdsgate's eyes.
package iamread

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/test/iamcheck"
)

// API is the part of IAM Read calls; *iam.Client implements it.
type API interface {
	GetRole(context.Context, *iam.GetRoleInput, ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	GetUser(context.Context, *iam.GetUserInput, ...func(*iam.Options)) (*iam.GetUserOutput, error)
	ListRoles(context.Context, *iam.ListRolesInput, ...func(*iam.Options)) (*iam.ListRolesOutput, error)
	ListRolePolicies(context.Context, *iam.ListRolePoliciesInput, ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error)
	GetRolePolicy(context.Context, *iam.GetRolePolicyInput, ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	ListAttachedRolePolicies(context.Context, *iam.ListAttachedRolePoliciesInput, ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error)
	ListUserPolicies(context.Context, *iam.ListUserPoliciesInput, ...func(*iam.Options)) (*iam.ListUserPoliciesOutput, error)
	GetUserPolicy(context.Context, *iam.GetUserPolicyInput, ...func(*iam.Options)) (*iam.GetUserPolicyOutput, error)
	ListAttachedUserPolicies(context.Context, *iam.ListAttachedUserPoliciesInput, ...func(*iam.Options)) (*iam.ListAttachedUserPoliciesOutput, error)
	GetPolicy(context.Context, *iam.GetPolicyInput, ...func(*iam.Options)) (*iam.GetPolicyOutput, error)
	GetPolicyVersion(context.Context, *iam.GetPolicyVersionInput, ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error)
}

// Principal names the base principal.
type Principal struct {
	Kind, Name string // "role" or "user"
	// ShardPath is the IAM path under which its shard roles live.
	ShardPath  string
	ExternalID string
}

func decode(s *string) string {
	raw := aws.ToString(s)
	if dec, err := url.PathUnescape(raw); err == nil && strings.HasPrefix(raw, "%7B") {
		return dec
	}
	return raw
}

// Read reads the base principal, every role under the shard path, their
// inline policies and the default versions of their attached policies.
func Read(ctx context.Context, api API, p Principal) (*iamcheck.World, error) {
	var baseARN string
	if p.Kind == "user" {
		u, err := api.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(p.Name)})
		if err != nil {
			return nil, err
		}
		baseARN = aws.ToString(u.User.Arn)
	} else {
		r, err := api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(p.Name)})
		if err != nil {
			return nil, err
		}
		baseARN = aws.ToString(r.Role.Arn)
	}
	w := iamcheck.New(baseARN, p.ExternalID, iamcheck.Quotas{})
	if err := readOne(ctx, api, w, p.Kind, p.Name); err != nil {
		return nil, err
	}
	var marker *string
	for {
		out, err := api.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String(p.ShardPath), Marker: marker})
		if err != nil {
			return nil, err
		}
		for _, r := range out.Roles {
			if aws.ToString(r.RoleName) == p.Name && p.Kind == "role" {
				continue
			}
			if err := readOne(ctx, api, w, "role", aws.ToString(r.RoleName)); err != nil {
				return nil, err
			}
		}
		if !out.IsTruncated {
			return w, nil
		}
		marker = out.Marker
	}
}

func readOne(ctx context.Context, api API, w *iamcheck.World, kind, name string) error {
	var arn, trust, boundary string
	var inline, attached []string
	if kind == "user" {
		u, err := api.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(name)})
		if err != nil {
			return err
		}
		arn = aws.ToString(u.User.Arn)
		names, err := api.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: aws.String(name)})
		if err != nil {
			return err
		}
		inline = names.PolicyNames
		att, err := api.ListAttachedUserPolicies(ctx, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(name)})
		if err != nil {
			return err
		}
		for _, a := range att.AttachedPolicies {
			attached = append(attached, aws.ToString(a.PolicyArn))
		}
	} else {
		r, err := api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
		if err != nil {
			return err
		}
		arn, trust = aws.ToString(r.Role.Arn), decode(r.Role.AssumeRolePolicyDocument)
		if b := r.Role.PermissionsBoundary; b != nil {
			boundary = aws.ToString(b.PermissionsBoundaryArn)
		}
		names, err := api.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
		if err != nil {
			return err
		}
		inline = names.PolicyNames
		att, err := api.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
		if err != nil {
			return err
		}
		for _, a := range att.AttachedPolicies {
			attached = append(attached, aws.ToString(a.PolicyArn))
		}
	}
	wp := w.Principal(kind, name, arn)
	wp.Trust = trust
	if boundary != "" {
		doc, err := defaultVersion(ctx, api, boundary)
		if err != nil {
			return err
		}
		wp.Boundary = doc
	}
	for _, pn := range inline {
		var doc *string
		if kind == "user" {
			out, err := api.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(pn)})
			if err != nil {
				return err
			}
			doc = out.PolicyDocument
		} else {
			out, err := api.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(pn)})
			if err != nil {
				return err
			}
			doc = out.PolicyDocument
		}
		wp.Inline[pn] = decode(doc)
	}
	for _, a := range attached {
		doc, err := defaultVersion(ctx, api, a)
		if err != nil {
			return err
		}
		wp.Managed[a] = doc
	}
	return nil
}

// defaultVersion is the document of a managed policy's default version.
func defaultVersion(ctx context.Context, api API, arn string) (string, error) {
	pol, err := api.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("policy %s: %w", arn, err)
	}
	v, err := api.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: pol.Policy.DefaultVersionId})
	if err != nil {
		return "", fmt.Errorf("policy %s: %w", arn, err)
	}
	return decode(v.PolicyVersion.Document), nil
}

// ReadPrincipal reads one role or user (its policies and boundary) as a
// world of its own, for judging what it may do itself.
func ReadPrincipal(ctx context.Context, api API, kind, name string) (*iamcheck.World, error) {
	w := iamcheck.New("", "", iamcheck.Quotas{})
	if err := readOne(ctx, api, w, kind, name); err != nil {
		return nil, err
	}
	for arn := range w.Principals {
		w.Base = arn
	}
	return w, nil
}
