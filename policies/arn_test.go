package policies

import (
	"errors"
	"strings"
	"testing"
)

func TestDBUserARN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arn  DBUserARN
		want string
	}{
		{DBUserARN{"aws", "us-east-1", "123456789012", "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "*"}, "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXYZ/*"},
		{DBUserARN{"aws-cn", "cn-north-1", "123456789012", "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "app"}, "arn:aws-cn:rds-db:cn-north-1:123456789012:dbuser:cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ/app"},
		{DBUserARN{"aws-us-gov", "us-gov-west-1", "123456789012", "prx-0123456789abcdef0", "report_ro"}, "arn:aws-us-gov:rds-db:us-gov-west-1:123456789012:dbuser:prx-0123456789abcdef0/report_ro"},
	}
	for _, tt := range tests {
		if got := tt.arn.String(); got != tt.want {
			t.Errorf("String() = %s, want %s", got, tt.want)
		}
		back, err := ParseDBUserARN(tt.want)
		if err != nil {
			t.Fatalf("ParseDBUserARN(%s): %v", tt.want, err)
		}
		if back != tt.arn {
			t.Errorf("round trip %+v != %+v", back, tt.arn)
		}
	}
	for _, bad := range []string{
		"arn:aws:rds:us-east-1:123456789012:db:mydb",
		"arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABC",
		"arn:aws:rds-db:us-east-1:12345:dbuser:db-ABC/x",
		"arn:aws:rds-db:cn-north-1:123456789012:dbuser:db-ABC/x",
		"arn:aws-iso:rds-db:us-east-1:123456789012:dbuser:db-ABC/x",
		"rds-db:us-east-1:123456789012:dbuser:db-ABC/x",
		"arn:aws:rds-db:mars-1:123456789012:dbuser:db-ABC/x",
	} {
		if _, err := ParseDBUserARN(bad); !errors.Is(err, ErrMalformedARN) {
			t.Errorf("ParseDBUserARN(%q) = %v, want ErrMalformedARN", bad, err)
		}
	}
}

func TestRedshiftAndIAMARNs(t *testing.T) {
	t.Parallel()
	if got, want := RedshiftDBUserARN("aws", "eu-west-1", "123456789012", "analytics", "bi"), "arn:aws:redshift:eu-west-1:123456789012:dbuser:analytics/bi"; got != want {
		t.Errorf("RedshiftDBUserARN = %s, want %s", got, want)
	}
	if got, want := RoleARN("aws", "123456789012", "/rdsgate/p/", "r"), "arn:aws:iam::123456789012:role/rdsgate/p/r"; got != want {
		t.Errorf("RoleARN = %s", got)
	}
	if got, want := PolicyARN("aws-us-gov", "123456789012", "", "p"), "arn:aws-us-gov:iam::123456789012:policy/p"; got != want {
		t.Errorf("PolicyARN = %s", got)
	}
	n, err := ParseIAMARN("arn:aws:iam::123456789012:role/a/b/proxy")
	if err != nil || n.Type != "role" || n.Path != "/a/b/" || n.Name != "proxy" {
		t.Errorf("ParseIAMARN = %+v, %v", n, err)
	}
	n, err = ParseIAMARN("arn:aws:sts::123456789012:assumed-role/proxy/session")
	if err != nil || n.Type != "assumed-role" || n.Name != "proxy/session" {
		t.Errorf("ParseIAMARN(assumed-role) = %+v, %v", n, err)
	}
	for _, bad := range []string{"arn:aws:iam::123456789012:group/x", "arn:aws:iam:us-east-1:123456789012:role/x", "arn:aws:iam::123456789012:role/", "arn:aws:s3:::bucket"} {
		if _, err := ParseIAMARN(bad); err == nil {
			t.Errorf("ParseIAMARN(%q) succeeded", bad)
		}
	}
}

func TestPartitionOf(t *testing.T) {
	t.Parallel()
	for region, want := range map[string]string{"us-east-1": "aws", "eu-central-2": "aws", "cn-northwest-1": "aws-cn", "us-gov-east-1": "aws-us-gov"} {
		if got, err := PartitionOf(region); err != nil || got != want {
			t.Errorf("PartitionOf(%s) = %s, %v; want %s", region, got, err, want)
		}
	}
	_, err := PartitionOf("us-east1")
	if !errors.Is(err, ErrUnknownRegion) || !strings.Contains(err.Error(), `did you mean "us-east-1"`) {
		t.Errorf("PartitionOf(us-east1) = %v, want a suggestion", err)
	}
}

func TestValidateResourceID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind ResourceKind
		id   string
		want string // error substring, empty for valid
	}{
		{KindInstance, "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""},
		{KindCluster, "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""},
		{KindProxy, "prx-0123456789abcdef0", ""},
		{KindInstance, "orders-db", "describe-db-instances"},
		{KindInstance, "db-abcdefghijklmnop", "DbiResourceId"},
		{KindCluster, "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "that is the id of an instance, not of a cluster"},
		{KindProxy, "prx-XYZ", "RDS Proxy"},
		{"aurora", "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "unknown kind"},
	}
	for _, tt := range tests {
		err := ValidateResourceID(tt.kind, tt.id)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateResourceID(%s, %s) = %v", tt.kind, tt.id, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateResourceID(%s, %s) = %v, want %q", tt.kind, tt.id, err, tt.want)
		}
	}
}

func TestMatchWildcard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"arn:aws:rds-db:*:123456789012:dbuser:*/*", "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-X/app", true},
		{"arn:aws:rds-db:*:123456789012:dbuser:*/*", "arn:aws:rds-db:us-east-1:210987654321:dbuser:db-X/app", false},
		{"arn:aws:iam::1:role/rdsgate/p/*", "arn:aws:iam::1:role/rdsgate/p/p-shard-001", true},
		{"arn:aws:iam::1:role/rdsgate/p/*", "arn:aws:iam::1:role/rdsgate/q/x", false},
		{"**a", "bba", true},
		{"*a*b*c*", "xaybzc", true},
		{"*a*b*c*", "xaybz", false},
	}
	for _, tt := range tests {
		if got := MatchWildcard(tt.pattern, tt.s); got != tt.want {
			t.Errorf("MatchWildcard(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestValidateIAMNameAndPath(t *testing.T) {
	t.Parallel()
	if err := ValidateIAMName("role", strings.Repeat("a", 65), 64); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("long name: %v", err)
	}
	if err := ValidateIAMName("role", "bad name", 64); err == nil {
		t.Error("space in name accepted")
	}
	if err := ValidateIAMName("role", "ok+=,.@_-1", 64); err != nil {
		t.Error(err)
	}
	for _, p := range []string{"/", "/a/", "/a/b-c/"} {
		if err := ValidateIAMPath(p); err != nil {
			t.Errorf("ValidateIAMPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"a/", "/a", "//", "/a b/"} {
		if err := ValidateIAMPath(p); err == nil {
			t.Errorf("ValidateIAMPath(%q) succeeded", p)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 databases", 1: "1 database", 2: "2 databases", 1000: "1000 databases"} {
		if got := Count(n, "database"); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}
