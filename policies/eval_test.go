package policies

import (
	"encoding/json"
	"testing"
)

func mustParse(t *testing.T, s string) *Document {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	const db = "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-AAAAAAAAAAAAAAAAAAAAAAAAAA/app"
	tests := []struct {
		name string
		docs []string
		req  Request
		want Decision
	}{
		{"exact allow", []string{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"` + db + `"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, Allowed},
		{"action case-insensitive", []string{`{"Statement":[{"Effect":"Allow","Action":"RDS-DB:Connect","Resource":"*"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, Allowed},
		{"nothing allows", []string{`{"Statement":[{"Effect":"Allow","Action":"rds:Describe*","Resource":"*"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, ImplicitDeny},
		{"deny wins across documents", []string{
			`{"Statement":[{"Effect":"Allow","Action":"rds-db:*","Resource":"*"}]}`,
			`{"Statement":[{"Effect":"Deny","Action":"rds-db:connect","Resource":"arn:aws:rds-db:*:*:dbuser:*/app"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, ExplicitDeny},
		{"not action", []string{`{"Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, Allowed},
		{"not resource excludes", []string{`{"Statement":[{"Effect":"Allow","Action":"*","NotResource":"arn:aws:rds-db:*:*:dbuser:db-AAAAAAAAAAAAAAAAAAAAAAAAAA/*"}]}`},
			Request{Action: "rds-db:connect", Resource: db}, ImplicitDeny},
		{"unknown condition does not allow", []string{`{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}]}`},
			Request{Action: "rds-db:connect", Resource: db, Context: map[string]string{"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, ImplicitDeny},
		{"unknown condition on deny denies", []string{
			`{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`},
			Request{Action: "rds-db:connect", Resource: db, Context: map[string]string{"aws:SourceIp": "192.0.2.1"}}, ExplicitDeny},
		{"missing key fails positive condition", []string{`{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"db"}}}]}`},
			Request{Action: "rds-db:connect", Resource: db}, ImplicitDeny},
		{"if exists holds when missing", []string{`{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEqualsIfExists":{"aws:PrincipalTag/team":"db"}}}]}`},
			Request{Action: "rds-db:connect", Resource: db}, Allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var docs []*Document
			for _, s := range tt.docs {
				docs = append(docs, mustParse(t, s))
			}
			if got := Evaluate(docs, tt.req); got != tt.want {
				t.Errorf("Evaluate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoleChain(t *testing.T) {
	t.Parallel()
	const (
		base  = "arn:aws:iam::123456789012:role/proxy"
		shard = "arn:aws:iam::123456789012:role/rdsgate/proxy/proxy-shard-001"
		other = "arn:aws:iam::123456789012:role/other"
		db    = "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-AAAAAAAAAAAAAAAAAAAAAAAAAA/*"
	)
	assume := mustParse(t, `{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::123456789012:role/rdsgate/proxy/*"}]}`)
	connect := mustParse(t, `{"Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"`+db+`"}]}`)
	state := func(trust *Document, boundary *Document) *IAMState {
		return &IAMState{Principals: map[string]*PrincipalPolicies{
			base:  {ARN: base, Identity: []*Document{assume}, Boundary: boundary},
			shard: {ARN: shard, Identity: []*Document{connect}, Trust: trust},
			other: {ARN: other, Identity: []*Document{connect}, Trust: TrustPolicy(base, "")},
		}}
	}
	s := state(TrustPolicy(base, ""), nil)
	if via := s.ConnectVia(base, db, 1, nil); len(via) != 1 || via[0] != shard {
		t.Fatalf("ConnectVia = %v, want only the shard (other is outside the assume pattern)", via)
	}
	if via := s.ConnectVia(base, db, 0, nil); len(via) != 0 {
		t.Fatalf("without hops ConnectVia = %v", via)
	}
	if s := state(TrustPolicy("arn:aws:iam::123456789012:role/somebody", ""), nil); s.CanAssume(base, shard, nil) {
		t.Fatal("trust policy naming someone else allowed the chain")
	}
	withExt := state(TrustPolicy(base, "ext"), nil)
	if withExt.CanAssume(base, shard, nil) || !withExt.CanAssume(base, shard, map[string]string{"sts:ExternalId": "ext"}) {
		t.Fatal("external id is not enforced")
	}
	boundary := mustParse(t, `{"Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}]}`)
	if state(TrustPolicy(base, ""), boundary).CanAssume(base, shard, nil) {
		t.Fatal("a boundary without sts:AssumeRole did not block the chain")
	}
	account := mustParse(t, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}`)
	if !state(account, nil).CanAssume(base, shard, nil) {
		t.Fatal("a trust policy naming the account root does not trust its roles")
	}
}

func TestBootstrapPolicy(t *testing.T) {
	t.Parallel()
	auto, err := NewBootstrapPolicy(BootstrapOptions{Types: BootstrapTypes, Name: "proxy", AccountID: testAccount,
		AssumeRoleARNs: []string{"arn:aws:iam::123456789012:role/rdsgate/proxy/*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := auto.Check(DefaultQuotas()); err != nil {
		t.Fatal(err)
	}
	self := &PrincipalPolicies{ARN: auto.PrincipalARN, Identity: []*Document{auto.Policy}, Boundary: auto.Boundary}
	allowed := func(action, resource string, ctx map[string]string) bool {
		return self.Allows(Request{Action: action, Resource: resource, Context: ctx})
	}
	connectPolicy := "arn:aws:iam::123456789012:policy/rdsgate/proxy-connect-03"
	checks := []struct {
		what             string
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"describe", "rds:DescribeDBInstances", "*", nil, true},
		{"enable iam auth", "rds:ModifyDBCluster", "arn:aws:rds:eu-west-1:123456789012:cluster:c", nil, true},
		{"own inline policy", "iam:PutRolePolicy", auto.PrincipalARN, nil, true},
		{"another role's policy", "iam:PutRolePolicy", "arn:aws:iam::123456789012:role/admin", nil, false},
		{"own managed shard", "iam:CreatePolicyVersion", connectPolicy, nil, true},
		{"the boundary itself", "iam:CreatePolicyVersion", auto.BoundaryARN, nil, false},
		{"attach own shard", "iam:AttachRolePolicy", auto.PrincipalARN, map[string]string{"iam:PolicyARN": connectPolicy}, true},
		{"attach admin policy", "iam:AttachRolePolicy", auto.PrincipalARN, map[string]string{"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"}, false},
		{"remove boundary", "iam:DeleteRolePermissionsBoundary", auto.PrincipalARN, nil, false},
		{"assume shard", "sts:AssumeRole", "arn:aws:iam::123456789012:role/rdsgate/proxy/proxy-shard-001", nil, true},
		{"assume other", "sts:AssumeRole", "arn:aws:iam::123456789012:role/admin", nil, false},
		{"redshift", "redshift:GetClusterCredentials", "arn:aws:redshift:us-east-1:123456789012:dbuser:c/u", nil, true},
		// Discovery by tag reads a workgroup's tags, as Teleport's
		// print-iam grants.
		{"redshift serverless tags", "redshift-serverless:ListTagsForResource", "arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/w", nil, true},
	}
	for _, c := range checks {
		if got := allowed(c.action, c.resource, c.ctx); got != c.want {
			t.Errorf("%s: %s on %s = %v, want %v", c.what, c.action, c.resource, got, c.want)
		}
	}
	// Whatever the proxy writes into its own inline policy, the boundary
	// keeps it to database connections.
	escalate := mustParse(t, `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	self.Identity = append(self.Identity, escalate)
	if allowed("iam:CreateUser", "arn:aws:iam::123456789012:user/evil", nil) || allowed("s3:GetObject", "arn:aws:s3:::b/k", nil) {
		t.Fatal("the boundary does not cap a self-written policy")
	}
	if !allowed("rds-db:connect", "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-X/app", nil) {
		t.Fatal("the boundary does not allow connecting")
	}

	manual, err := NewBootstrapPolicy(BootstrapOptions{Types: []string{TypeRDS}, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	if manual.Boundary != nil {
		t.Error("manual mode has a boundary")
	}
	for _, st := range manual.Policy.Statements {
		for _, a := range st.Action.List {
			if a[:4] == "iam:" || a == "rds:ModifyDBInstance" || a == "rds:ModifyDBCluster" {
				t.Errorf("manual mode allows %s", a)
			}
		}
	}
	user, err := NewBootstrapPolicy(BootstrapOptions{Kind: PrincipalUser, Name: "alice", AccountID: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	if !(&PrincipalPolicies{Identity: []*Document{user.Policy}}).Allows(Request{Action: "iam:PutUserPolicy", Resource: "arn:aws:iam::123456789012:user/alice"}) {
		t.Error("a user cannot manage its own policy")
	}
	for _, bad := range []BootstrapOptions{
		{Types: []string{"dynamodb"}, Manual: true},
		{Types: []string{TypeRDS}},
		{Manual: true, Partition: "aws-iso"},
		{Manual: true, AccountID: "42"},
		{Manual: true, AssumeRoleARNs: []string{"arn:aws:iam::123456789012:user/x"}},
		{Manual: true, AssumeRoleARNs: []string{"arn:aws-cn:iam::123456789012:role/x"}},
	} {
		if _, err := NewBootstrapPolicy(bad); err == nil {
			t.Errorf("NewBootstrapPolicy(%+v) succeeded", bad)
		}
	}
}

// Aurora clusters are RDS to IAM: --types aurora (discover's word for
// clusters) grants what rds grants, once.
func TestBootstrapAuroraIsRDS(t *testing.T) {
	want, err := NewBootstrapPolicy(BootstrapOptions{Types: []string{TypeRDS}, Name: "proxy", AccountID: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	for _, types := range [][]string{{"aurora"}, {"aurora", TypeRDS}} {
		got, err := NewBootstrapPolicy(BootstrapOptions{Types: types, Name: "proxy", AccountID: testAccount})
		if err != nil {
			t.Fatalf("%v: %v", types, err)
		}
		a, _ := json.Marshal(got.Policy)
		b, _ := json.Marshal(want.Policy)
		if string(a) != string(b) {
			t.Fatalf("%v grants\n%s\nwant what rds grants\n%s", types, a, b)
		}
	}
}
