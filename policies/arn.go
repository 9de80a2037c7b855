package policies

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rdsgate/rdsgate/internal/wildcard"
)

// Partitions rdsgate builds ARNs for.
const (
	PartitionAWS      = "aws"
	PartitionChina    = "aws-cn"
	PartitionGovCloud = "aws-us-gov"
)

// regions lists the regions of each partition. IAM is global per partition,
// so a plan never mixes partitions.
var regions = map[string][]string{
	PartitionAWS: {
		"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
		"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
		"ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1",
		"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1",
		"eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
		"sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
	},
	PartitionChina:    {"cn-north-1", "cn-northwest-1"},
	PartitionGovCloud: {"us-gov-east-1", "us-gov-west-1"},
}

// Sentinel errors, wrapped with context by the functions that return them.
var (
	ErrUnknownPartition = errors.New("unknown partition")
	ErrUnknownRegion    = errors.New("unknown region")
	ErrMalformedARN     = errors.New("malformed ARN")
	ErrResourceID       = errors.New("malformed resource id")
)

// Partitions returns the partitions rdsgate knows, sorted.
func Partitions() []string { return slices.Sorted(maps.Keys(regions)) }

// ValidatePartition checks a partition name.
func ValidatePartition(p string) error {
	if _, ok := regions[p]; ok {
		return nil
	}
	return fmt.Errorf("%w %q: use one of %s", ErrUnknownPartition, p, strings.Join(Partitions(), ", "))
}

// PartitionOf returns the partition a region belongs to.
func PartitionOf(region string) (string, error) {
	for p, rs := range regions {
		if slices.Contains(rs, region) {
			return p, nil
		}
	}
	hint := ""
	if near := nearestRegion(region); near != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", near)
	}
	return "", fmt.Errorf("%w %q%s: regions look like us-east-1", ErrUnknownRegion, region, hint)
}

func nearestRegion(s string) string {
	var all []string
	for _, rs := range regions {
		all = append(all, rs...)
	}
	return Nearest(s, all, 2)
}

// ARN is an Amazon Resource Name split into its parts.
type ARN struct {
	Partition string
	Service   string
	Region    string
	AccountID string
	Resource  string
}

func (a ARN) String() string {
	return "arn:" + a.Partition + ":" + a.Service + ":" + a.Region + ":" + a.AccountID + ":" + a.Resource
}

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

// ParseARN splits an ARN and checks its partition and, where present, its
// region and account id.
func ParseARN(s string) (ARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ARN{}, fmt.Errorf("%w %q: expected arn:partition:service:region:account-id:resource", ErrMalformedARN, s)
	}
	a := ARN{Partition: parts[1], Service: parts[2], Region: parts[3], AccountID: parts[4], Resource: parts[5]}
	if err := ValidatePartition(a.Partition); err != nil {
		return ARN{}, fmt.Errorf("%w %q: %w", ErrMalformedARN, s, err)
	}
	if a.Service == "" || a.Resource == "" {
		return ARN{}, fmt.Errorf("%w %q: service and resource must not be empty", ErrMalformedARN, s)
	}
	if a.Region != "" && !strings.ContainsAny(a.Region, "*?") {
		p, err := PartitionOf(a.Region)
		if err != nil {
			return ARN{}, fmt.Errorf("%w %q: %w", ErrMalformedARN, s, err)
		}
		if p != a.Partition {
			return ARN{}, fmt.Errorf("%w %q: region %s is in partition %s, not %s", ErrMalformedARN, s, a.Region, p, a.Partition)
		}
	}
	if a.AccountID != "" && !strings.ContainsAny(a.AccountID, "*?") && !accountIDPattern.MatchString(a.AccountID) {
		return ARN{}, fmt.Errorf("%w %q: account id %q must be 12 digits", ErrMalformedARN, s, a.AccountID)
	}
	return a, nil
}

// ValidateAccountID checks a 12-digit AWS account id.
func ValidateAccountID(id string) error {
	if !accountIDPattern.MatchString(id) {
		return fmt.Errorf("account id %q must be 12 digits (find it with: aws sts get-caller-identity --query Account)", id)
	}
	return nil
}

// ResourceKind is what an rds-db:connect resource id names.
type ResourceKind string

// Resource kinds and the prefixes of their ids.
const (
	KindInstance ResourceKind = "instance" // DbiResourceId, db-...
	KindCluster  ResourceKind = "cluster"  // DbClusterResourceId, cluster-...
	KindProxy    ResourceKind = "proxy"    // RDS Proxy, prx-...
	// KindWorkgroup is a Redshift Serverless workgroup, which has no
	// rds-db resource id.
	KindWorkgroup ResourceKind = "workgroup"
)

var resourceIDPatterns = map[ResourceKind]*regexp.Regexp{
	KindInstance: regexp.MustCompile(`^db-[A-Z0-9]{10,40}$`),
	KindCluster:  regexp.MustCompile(`^cluster-[A-Z0-9]{10,40}$`),
	KindProxy:    regexp.MustCompile(`^prx-[0-9a-z]{17}$`),
}

var resourceIDHints = map[ResourceKind]string{
	KindInstance: "an instance's DbiResourceId looks like db-ABCDEFGHIJKLMNOPQRSTUVWXY1 (find it with: aws rds describe-db-instances --db-instance-identifier NAME --query 'DBInstances[0].DbiResourceId')",
	KindCluster:  "a cluster's DbClusterResourceId looks like cluster-ABCDEFGHIJKLMNOPQRSTUVWXY1 (find it with: aws rds describe-db-clusters --db-cluster-identifier NAME --query 'DBClusters[0].DbClusterResourceId')",
	KindProxy:    "an RDS Proxy's resource id looks like prx-0123456789abcdef0, the last part of its ARN (aws rds describe-db-proxies --db-proxy-name NAME --query 'DBProxies[0].DBProxyArn')",
}

// ValidResourceKind reports whether k is a known kind.
func ValidResourceKind(k ResourceKind) bool { _, ok := resourceIDPatterns[k]; return ok }

// ValidateResourceID checks that id is a resource id of the given kind, as
// IAM database authentication names it in rds-db ARNs. A common mistake is to
// give the instance identifier (the name) instead; the error says where to
// find the id.
func ValidateResourceID(kind ResourceKind, id string) error {
	re, ok := resourceIDPatterns[kind]
	if !ok {
		return fmt.Errorf("%w: unknown kind %q (instance, cluster or proxy)", ErrResourceID, kind)
	}
	if re.MatchString(id) {
		return nil
	}
	for other, ore := range resourceIDPatterns {
		if ore.MatchString(id) {
			return fmt.Errorf("%w %q: that is the id of %s, not of %s; fix kind or resource_id", ErrResourceID, id, article(string(other)), article(string(kind)))
		}
	}
	return fmt.Errorf("%w %q: %s", ErrResourceID, id, resourceIDHints[kind])
}

// DBUserARN is the resource of an rds-db:connect permission.
type DBUserARN struct {
	Partition, Region, AccountID string
	ResourceID                   string // db-..., cluster-... or prx-...
	DBUser                       string // a database user name, or * for any
}

// String builds arn:<partition>:rds-db:<region>:<account>:dbuser:<resource-id>/<db-user>.
func (a DBUserARN) String() string {
	return "arn:" + a.Partition + ":rds-db:" + a.Region + ":" + a.AccountID + ":dbuser:" + a.ResourceID + "/" + a.DBUser
}

// ParseDBUserARN parses an rds-db:connect resource ARN.
func ParseDBUserARN(s string) (DBUserARN, error) {
	a, err := ParseARN(s)
	if err != nil {
		return DBUserARN{}, err
	}
	if a.Service != "rds-db" {
		return DBUserARN{}, fmt.Errorf("%w %q: service is %q, want rds-db", ErrMalformedARN, s, a.Service)
	}
	rest, ok := strings.CutPrefix(a.Resource, "dbuser:")
	if !ok {
		return DBUserARN{}, fmt.Errorf("%w %q: resource must start with \"dbuser:\"", ErrMalformedARN, s)
	}
	id, user, ok := strings.Cut(rest, "/")
	if !ok || id == "" || user == "" {
		return DBUserARN{}, fmt.Errorf("%w %q: resource must be dbuser:<resource-id>/<db-user>", ErrMalformedARN, s)
	}
	return DBUserARN{Partition: a.Partition, Region: a.Region, AccountID: a.AccountID, ResourceID: id, DBUser: user}, nil
}

// RedshiftDBUserARN is the resource of redshift:GetClusterCredentials:
// arn:<partition>:redshift:<region>:<account>:dbuser:<cluster>/<db-user>.
func RedshiftDBUserARN(partition, region, account, cluster, dbUser string) string {
	return ARN{Partition: partition, Service: "redshift", Region: region, AccountID: account, Resource: "dbuser:" + cluster + "/" + dbUser}.String()
}

// RoleARN builds an IAM role ARN; path is "/" or "/a/b/".
func RoleARN(partition, account, path, name string) string {
	return ARN{Partition: partition, Service: "iam", AccountID: account, Resource: "role" + cleanPath(path) + name}.String()
}

// UserARN builds an IAM user ARN.
func UserARN(partition, account, path, name string) string {
	return ARN{Partition: partition, Service: "iam", AccountID: account, Resource: "user" + cleanPath(path) + name}.String()
}

// PolicyARN builds a customer managed policy ARN.
func PolicyARN(partition, account, path, name string) string {
	return ARN{Partition: partition, Service: "iam", AccountID: account, Resource: "policy" + cleanPath(path) + name}.String()
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// IAMName is a role, user or policy parsed from an IAM ARN.
type IAMName struct {
	Partition, AccountID string
	Type                 string // role, user, policy, assumed-role
	Path                 string // "/" or "/a/b/"
	Name                 string
}

// ParseIAMARN parses role, user and policy ARNs (and STS assumed-role ARNs,
// whose session name is returned as part of Name after a slash).
func ParseIAMARN(s string) (IAMName, error) {
	a, err := ParseARN(s)
	if err != nil {
		return IAMName{}, err
	}
	if a.Service == "sts" {
		rest, ok := strings.CutPrefix(a.Resource, "assumed-role/")
		if !ok {
			return IAMName{}, fmt.Errorf("%w %q: an sts ARN must be assumed-role/<role>/<session>", ErrMalformedARN, s)
		}
		return IAMName{Partition: a.Partition, AccountID: a.AccountID, Type: "assumed-role", Path: "/", Name: rest}, nil
	}
	if a.Service != "iam" {
		return IAMName{}, fmt.Errorf("%w %q: service is %q, want iam", ErrMalformedARN, s, a.Service)
	}
	if a.Region != "" {
		return IAMName{}, fmt.Errorf("%w %q: IAM ARNs have no region", ErrMalformedARN, s)
	}
	typ, rest, ok := strings.Cut(a.Resource, "/")
	if !ok || rest == "" {
		return IAMName{}, fmt.Errorf("%w %q: expected %s/<name>", ErrMalformedARN, s, typ)
	}
	switch typ {
	case "role", "user", "policy":
	default:
		return IAMName{}, fmt.Errorf("%w %q: unsupported IAM resource type %q (role, user or policy)", ErrMalformedARN, s, typ)
	}
	path, name := "/", rest
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		path, name = "/"+rest[:i+1], rest[i+1:]
	}
	if name == "" {
		return IAMName{}, fmt.Errorf("%w %q: missing name after the path", ErrMalformedARN, s)
	}
	return IAMName{Partition: a.Partition, AccountID: a.AccountID, Type: typ, Path: path, Name: name}, nil
}

var iamNamePattern = regexp.MustCompile(`^[\w+=,.@-]+$`)

// ValidateIAMName checks a role, user or policy name against IAM's character
// set and the given length limit.
func ValidateIAMName(what, name string, maxLen int) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty", what)
	case len(name) > maxLen:
		return fmt.Errorf("%s name %q is %d characters; IAM allows at most %d", what, name, len(name), maxLen)
	case !iamNamePattern.MatchString(name):
		return fmt.Errorf("%s name %q may only use letters, digits and +=,.@_-", what, name)
	}
	return nil
}

// ValidateIAMPath checks an IAM path: "/" or "/a/b/".
func ValidateIAMPath(path string) error {
	if path == "/" {
		return nil
	}
	if !strings.HasPrefix(path, "/") || !strings.HasSuffix(path, "/") || strings.Contains(path, "//") || len(path) > 512 {
		return fmt.Errorf("IAM path %q must begin and end with / (for example /rdsgate/) and be at most 512 characters", path)
	}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if !iamNamePattern.MatchString(seg) {
			return fmt.Errorf("IAM path %q has a segment %q with characters IAM does not allow", path, seg)
		}
	}
	return nil
}

// MatchWildcard reports whether s matches an IAM pattern where * matches any
// run of characters and ? exactly one. IAM compares ARNs case-sensitively.
func MatchWildcard(pattern, s string) bool { return wildcard.Match(pattern, s) }

// sortStrings sorts and deduplicates in place.
func sortStrings(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}
