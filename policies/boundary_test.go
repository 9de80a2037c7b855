package policies

import (
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/test/iamcheck"
)

// The trial's role: an agents policy (CloudWatch Logs, SSM), a team's S3
// read, a statement that denies, and one written with NotAction.
var otherPolicies = map[string]string{
	"inline platform-agents": `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["logs:PutLogEvents","logs:CreateLogStream"],"Resource":"arn:aws:logs:us-east-1:123456789012:log-group:/platform/*"},
		{"Effect":"Allow","Action":"ssm:UpdateInstanceInformation","Resource":"*"},
		{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}`,
	"managed arn:aws:iam::123456789012:policy/team-read": `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-bucket/*"},
		{"Effect":"Allow","Action":"rds:DescribeDBInstances","Resource":"*"}]}`,
	"inline admin-ish": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}`,
}

func otherDocs(t *testing.T) map[string]*Document {
	t.Helper()
	docs := map[string]*Document{}
	for name, text := range otherPolicies {
		d, err := Parse([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = d
	}
	return docs
}

func TestBoundaryCutsAndKeeps(t *testing.T) {
	t.Parallel()
	bp, err := NewBootstrapPolicy(BootstrapOptions{Kind: PrincipalRole, Name: "platform-proxy", AccountID: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	docs := otherDocs(t)
	cuts := BoundaryCuts(bp.Boundary, docs)
	got := DescribeCuts(cuts)
	want := "every action but iam:* (inline admin-ish); logs:PutLogEvents, logs:CreateLogStream, ssm:UpdateInstanceInformation (inline platform-agents); " +
		"s3:GetObject (managed arn:aws:iam::123456789012:policy/team-read)"
	if got != want {
		t.Fatalf("cuts:\n got %s\nwant %s", got, want)
	}
	// rds:DescribeDBInstances is in the boundary already: not a cut. The
	// Deny is not something the role could do.
	for _, c := range cuts {
		if c.Action == "rds:DescribeDBInstances" || c.Action == "s3:DeleteObject" {
			t.Errorf("reported %s, which the boundary does not take away", c.Action)
		}
	}

	// Keeping them: the new boundary cuts nothing, and the independent
	// model agrees that every action the role had still works with the
	// boundary set, while the boundary still grants nothing by itself.
	o := bp.Options
	o.Keep = KeepStatements(bp.Boundary, docs)
	if len(o.Keep) != 4 {
		t.Fatalf("kept %d statements, want the 4 with cuts", len(o.Keep))
	}
	kept, err := NewBootstrapPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Check(DefaultQuotas()); err != nil {
		t.Fatal(err)
	}
	if left := BoundaryCuts(kept.Boundary, docs); len(left) > 0 {
		t.Fatalf("the kept boundary still cuts %s", DescribeCuts(left))
	}
	var identity []string
	for _, text := range otherPolicies {
		identity = append(identity, text)
	}
	boundary := string(kept.Boundary.JSON())
	for _, req := range [][2]string{
		{"logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/platform/api:log-stream:x"},
		{"ssm:UpdateInstanceInformation", "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"},
		{"s3:GetObject", "arn:aws:s3:::team-bucket/report.csv"},
		{"ec2:DescribeInstances", "*"},
	} {
		if !iamcheck.Allows(identity, boundary, req[0], req[1]) {
			t.Errorf("with the kept boundary, iamcheck denies %s on %s", req[0], req[1])
		}
		if iamcheck.Allows(identity, string(bp.Boundary.JSON()), req[0], req[1]) {
			t.Errorf("iamcheck allows %s on %s through the plain boundary: the cut was not real", req[0], req[1])
		}
	}
	// What the proxy could grant itself stays capped: without the NotAction
	// statement, a policy it writes for another bucket is still denied.
	delete(docs, "inline admin-ish")
	o.Keep = KeepStatements(bp.Boundary, docs)
	narrow, err := NewBootstrapPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	selfGrant := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	if iamcheck.Allows([]string{selfGrant}, string(narrow.Boundary.JSON()), "s3:GetObject", "arn:aws:s3:::other-bucket/x") {
		t.Error("the kept boundary lets the proxy grant itself a bucket no policy of the role named")
	}
	if iamcheck.Allows([]string{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:CreateUser","Resource":"*"}]}`}, boundary, "iam:CreateUser", "*") {
		t.Error("the kept boundary would let the proxy grant itself iam:CreateUser")
	}
}

func TestBoundaryTooLargeNamesTheKeep(t *testing.T) {
	t.Parallel()
	var resources []string
	for i := range 120 {
		resources = append(resources, `"arn:aws:logs:us-east-1:123456789012:log-group:/platform/service-`+strings.Repeat("x", 20)+string(rune('a'+i%26))+`:*"`)
	}
	big, err := Parse([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:PutLogEvents","Resource":[` + strings.Join(resources, ",") + `]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	bp, _ := NewBootstrapPolicy(BootstrapOptions{Kind: PrincipalRole, Name: "p", AccountID: testAccount})
	o := bp.Options
	o.Keep = KeepStatements(bp.Boundary, map[string]*Document{"inline big": big})
	kept, err := NewBootstrapPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Check(DefaultQuotas()); err == nil || !strings.Contains(err.Error(), "1 statement it keeps") {
		t.Fatalf("Check = %v, want the size error naming the kept statement", err)
	}
}
