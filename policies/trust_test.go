package policies

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTrustSpecRoundTrip(t *testing.T) {
	specs := []TrustSpec{
		{RoleARNs: []string{"arn:aws:iam::123456789012:role/b", "arn:aws:iam::123456789012:role/a"}},
		{RoleARNs: []string{"arn:aws:iam::123456789012:role/proxy"}, ExternalID: "rdsgate-ext-1"},
		{Services: []string{"ecs-tasks.amazonaws.com", "ec2.amazonaws.com"}},
		{RoleARNs: []string{"arn:aws:iam::123456789012:root"}, Services: []string{"ec2.amazonaws.com"}, ExternalID: "xy"},
	}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		doc, err := Parse(s.Document().JSON())
		if err != nil {
			t.Fatal(err)
		}
		back, ok := TrustSpecOf(doc)
		if !ok {
			t.Fatalf("%s: read back as not representable", doc.JSON())
		}
		if !Equivalent(back.Document(), s.Document()) {
			t.Fatalf("round trip changed the meaning:\n%s\n%s", s.Document().JSON(), back.Document().JSON())
		}
	}
	// Order of principals does not matter; the document is canonical.
	a := TrustSpec{RoleARNs: []string{"arn:aws:iam::1:role/x", "arn:aws:iam::1:role/y"}}.Document().JSON()
	b := TrustSpec{RoleARNs: []string{"arn:aws:iam::1:role/y", "arn:aws:iam::1:role/x", "arn:aws:iam::1:role/y"}}.Document().JSON()
	if string(a) != string(b) {
		t.Fatalf("%s != %s", a, b)
	}
}

func TestTrustSpecOfRefusesWhatItCannotSay(t *testing.T) {
	for _, doc := range []string{
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:role/a"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::1:role/a"},"Action":"sts:AssumeRole"}]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"cognito-identity.amazonaws.com"},"Action":"sts:AssumeRole"}]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:role/a"},"Action":"sts:AssumeRole","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}]}`,
	} {
		d, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := TrustSpecOf(d); ok {
			t.Errorf("%s read as a plain trust spec", doc)
		}
	}
}

func TestTrustSpecValidate(t *testing.T) {
	for _, c := range []struct {
		spec  TrustSpec
		field string
	}{
		{TrustSpec{}, "trusted_role_arns"},
		{TrustSpec{RoleARNs: []string{"role/x"}}, "trusted_role_arns"},
		{TrustSpec{RoleARNs: []string{"arn:aws:iam::123456789012:policy/x"}}, "trusted_role_arns"},
		{TrustSpec{Services: []string{"ec2"}}, "trusted_services"},
		{TrustSpec{Services: []string{"ec2.amazonaws.com"}, ExternalID: "x"}, "external_id"},
		{TrustSpec{Services: []string{"ec2.amazonaws.com"}, Sid: "my-sid"}, "sid"},
	} {
		err := c.spec.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: %v, want an error on %s", c.spec, err, c.field)
		}
	}
}

func TestWithStatementsKeepsOthers(t *testing.T) {
	orig, err := Parse([]byte(`{"Version":"2012-10-17","Statement":[{"Sid":"Theirs","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	spec := TrustSpec{Sid: "Rdsgate", RoleARNs: []string{"arn:aws:iam::123456789012:role/proxy"}}
	with := WithStatements(orig, "Rdsgate", spec.Statements())
	if len(with.Statements) != 2 || with.Statements[0].Sid != "Theirs" {
		t.Fatalf("%s", with.JSON())
	}
	// Adding again replaces rather than repeats.
	again := WithStatements(with, "Rdsgate", spec.Statements())
	if !reflect.DeepEqual(again, with) {
		t.Fatalf("%s\n%s", again.JSON(), with.JSON())
	}
	if got := StatementsWithSid(again, "Rdsgate"); len(got) != 1 {
		t.Fatalf("%d statements", len(got))
	}
	without := WithStatements(again, "Rdsgate", nil)
	if !Equivalent(without, orig) {
		t.Fatalf("%s", without.JSON())
	}
}
