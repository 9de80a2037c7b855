package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rdsgate/rdsgate/policies"
)

// Finding statuses.
const (
	StatusOK   = "ok"
	StatusWarn = "warn"
	StatusFail = "fail"
)

// Finding is one check of doctor: what was checked, how it went, and what
// to do when it did not.
type Finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// DoctorOptions say what to check beyond the credentials.
type DoctorOptions struct {
	Plan      *policies.Plan
	Inventory *policies.Inventory
	// DialTimeout bounds each TCP reach test (default 3s).
	DialTimeout time.Duration
	// Dial replaces net.DialTimeout in tests.
	Dial func(network, address string, timeout time.Duration) (net.Conn, error)
	// Chain, when set, is checked from the caller: it must be able to
	// assume Chain[0], which must be able to assume Chain[1].
	Chain      []string
	ExternalID string
}

// credentialSources names the SDK's providers for people.
var credentialSources = []struct{ prefix, name string }{
	{"EnvConfigCredentials", "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"},
	{"SharedConfigCredentials", "shared credentials file"},
	{"WebIdentityCredentials", "web identity token (EKS IRSA or another OIDC provider)"},
	{"AssumeRoleProvider", "role assumed by the profile (role_arn in ~/.aws/config)"},
	{"EC2RoleProvider", "instance metadata (the EC2 instance profile)"},
	{"CredentialsEndpointProvider", "container credentials endpoint (ECS task role or EKS Pod Identity)"},
	{"SSOProvider", "AWS IAM Identity Center (SSO) session"},
	{"ProcessProvider", "credential_process of the profile"},
	{"StaticCredentials", "static credentials given to rdsgate"},
}

func describeSource(src string) string {
	for _, s := range credentialSources {
		if strings.HasPrefix(src, s.prefix) {
			if rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(src, s.prefix), ":")); rest != "" {
				return s.name + " (" + rest + ")"
			}
			return s.name
		}
	}
	return src
}

// noCredentialsFix lists the usual reasons the SDK found no credentials,
// from what this machine's environment says.
func noCredentialsFix() string {
	var causes []string
	present := func(k string) bool { return os.Getenv(k) != "" }
	switch {
	case present("AWS_ACCESS_KEY_ID") != present("AWS_SECRET_ACCESS_KEY"):
		causes = append(causes, "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both")
	case !present("AWS_ACCESS_KEY_ID"):
		causes = append(causes, "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment")
	}
	if p := os.Getenv("AWS_PROFILE"); p != "" {
		causes = append(causes, fmt.Sprintf("AWS_PROFILE=%s: check it exists with `aws configure list-profiles`, and for SSO profiles run `aws sso login --profile %s`", p, p))
	} else {
		causes = append(causes, "no ~/.aws/credentials or default profile (`aws configure` writes one)")
	}
	if present("AWS_ROLE_ARN") != present("AWS_WEB_IDENTITY_TOKEN_FILE") {
		causes = append(causes, "on EKS with IRSA both AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE must be set: annotate the service account with eks.amazonaws.com/role-arn")
	}
	if _, err := os.Stat("/.dockerenv"); err == nil || present("KUBERNETES_SERVICE_HOST") || present("ECS_CONTAINER_METADATA_URI_V4") {
		causes = append(causes, "in a container: on ECS give the task a task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set for it); "+
			"on EC2 with IMDSv2 the default hop limit of 1 stops the metadata answer one hop short of the container: "+
			"aws ec2 modify-instance-metadata-options --instance-id i-... --http-put-response-hop-limit 2 --http-tokens required")
	} else {
		causes = append(causes, "on EC2: attach an instance profile with a role (aws ec2 associate-iam-instance-profile)")
	}
	return "usual causes: " + strings.Join(causes, "; ")
}

// Doctor checks, in order, the credentials and identity rdsgate uses, the
// plan's roles and their trust, policy headroom against the account's live
// quotas, IAM authentication on each database and whether each endpoint
// answers. Each finding says what to do when it is not ok.
func Doctor(ctx context.Context, c *Clients, o DoctorOptions) []Finding {
	var out []Finding
	add := func(f Finding) { out = append(out, f) }
	creds, err := c.Config.Credentials.Retrieve(ctx)
	if err != nil {
		add(Finding{Check: "credentials", Status: StatusFail, Detail: "the AWS SDK found no credentials: " + firstLine(err.Error()), Fix: noCredentialsFix()})
		return out
	}
	add(Finding{Check: "credentials", Status: StatusOK, Detail: "from " + describeSource(creds.Source)})
	partition := policies.PartitionAWS
	if o.Plan != nil {
		partition = o.Plan.Partition
	}
	c.UseIAMRegion(partition)
	id, err := c.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		add(Finding{Check: "identity", Status: StatusFail, Detail: explain(err, "sts:GetCallerIdentity", "the credentials").Error(),
			Fix: "the credentials were found but AWS refused them: expired session (refresh it), wrong partition or region, or a clock far off"})
		return out
	}
	caller := aws.ToString(id.Arn)
	add(Finding{Check: "identity", Status: StatusOK, Detail: fmt.Sprintf("%s in account %s", caller, aws.ToString(id.Account))})
	if len(o.Chain) > 0 {
		from := caller
		if rest, ok := strings.CutPrefix(caller, "arn:"+partition+":sts::"+aws.ToString(id.Account)+":user/"); ok {
			from = policies.UserARN(partition, aws.ToString(id.Account), "/", rest) // emulators name users under sts
		} else if n, err := policies.ParseIAMARN(caller); err == nil && n.Type == "assumed-role" {
			role, _, _ := strings.Cut(n.Name, "/")
			from = policies.RoleARN(n.Partition, n.AccountID, "/", role)
		}
		hops, err := CheckChain(ctx, c.IAM, append([]string{from}, o.Chain...), o.ExternalID)
		if err != nil {
			add(Finding{Check: "chain", Status: StatusFail, Detail: err.Error()})
		}
		for _, h := range hops {
			f := Finding{Check: "chain to " + h.To[strings.LastIndexByte(h.To, '/')+1:], Status: StatusOK, Detail: h.From + " may assume " + h.To}
			if !h.OK {
				f.Status, f.Detail, f.Fix = StatusFail, strings.Join(h.Problems, "; "), strings.Join(h.Fixes, "; ")
			}
			add(f)
		}
	}
	if o.Plan != nil {
		if o.Plan.AccountID != aws.ToString(id.Account) {
			add(Finding{Check: "account", Status: StatusFail, Detail: fmt.Sprintf("the plan is for account %s, the credentials are for %s", o.Plan.AccountID, aws.ToString(id.Account)),
				Fix: "use credentials of the plan's account (--profile), or the plan of this account"})
			return out
		}
		out = append(out, doctorPlan(ctx, c, o.Plan)...)
	}
	if o.Inventory != nil {
		out = append(out, doctorDatabases(ctx, c, o)...)
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func doctorPlan(ctx context.Context, c *Clients, pl *policies.Plan) []Finding {
	var out []Finding
	summary, err := c.IAM.GetAccountSummary(ctx, &iam.GetAccountSummaryInput{})
	if err != nil {
		return append(out, Finding{Check: "quotas", Status: StatusFail, Detail: explain(err, "iam:GetAccountSummary", "the account").Error(),
			Fix: "allow iam:GetAccountSummary, or check quotas by hand with aws iam get-account-summary"})
	}
	live := summary.SummaryMap
	for _, pp := range pl.Principals {
		who := fmt.Sprintf("%s %s", pp.Kind, pp.Name)
		check := "principal " + pp.Name
		_, obs, err := ReadPolicies(ctx, c.IAM, pp.ARN)
		switch {
		case err != nil:
			out = append(out, Finding{Check: check, Status: StatusFail, Detail: err.Error()})
			continue
		case obs == nil:
			fix := "create it first: rdsgate attaches to the proxy's existing principal"
			if pp.Shard {
				fix = "run rdsgate shards apply, which creates shard roles"
			}
			out = append(out, Finding{Check: check, Status: StatusFail, Detail: who + " does not exist", Fix: fix})
			continue
		case pp.Shard && !obs.Managed():
			out = append(out, Finding{Check: check, Status: StatusFail, Detail: who + " exists without rdsgate's tag", Fix: "rename or delete it, or tag it " + TagManaged + "=" + TagManagedValue})
			continue
		}
		out = append(out, Finding{Check: check, Status: StatusOK, Detail: who + " exists"})
		if pp.Shard {
			hops, err := CheckChain(ctx, c.IAM, []string{pl.Base.ARN, pp.ARN}, pl.Settings.ExternalID)
			if err != nil {
				out = append(out, Finding{Check: "trust " + pp.Name, Status: StatusFail, Detail: err.Error()})
			} else if h := hops[0]; h.OK {
				out = append(out, Finding{Check: "trust " + pp.Name, Status: StatusOK, Detail: pl.Base.Name + " may assume " + pp.Name})
			} else {
				out = append(out, Finding{Check: "trust " + pp.Name, Status: StatusFail, Detail: strings.Join(h.Problems, "; "), Fix: strings.Join(h.Fixes, "; ")})
			}
		}
		// Headroom: rdsgate fills the budget by design, so what matters is
		// that everything together fits and that other policies stay within
		// what the plan reserved for them.
		inlineKey, attachedKey := "RolePolicySizeQuota", "AttachedPoliciesPerRoleQuota"
		if pp.Kind == policies.PrincipalUser {
			inlineKey, attachedKey = "UserPolicySizeQuota", "AttachedPoliciesPerUserQuota"
		}
		reservedInline, reservedManaged := 0, 0
		if !pp.Shard {
			reservedInline, reservedManaged = pl.Settings.ReservedInline, pl.Settings.ReservedManaged
		}
		others, total := obs.OtherInlineSize(), 0
		for _, d := range obs.Inline {
			total += d.Size()
		}
		out = append(out, headroom("inline "+pp.Name,
			fmt.Sprintf("%s's inline policies use %d of %d characters (%d by policies outside the plan; the plan reserved %d)", who, total, live[inlineKey], others, reservedInline),
			total, int(live[inlineKey]), others, reservedInline,
			fmt.Sprintf("plan again with --reserved-inline %d, or move those inline policies into managed ones", others)))
		otherManaged := 0
		for _, a := range obs.Attached {
			if !ownManaged(pp.Name, a[strings.LastIndexByte(a, '/')+1:]) {
				otherManaged++
			}
		}
		out = append(out, headroom("managed "+pp.Name,
			fmt.Sprintf("%s has %d of %d managed policies attached (%d outside the plan; the plan reserved %d)", who, len(obs.Attached), live[attachedKey], otherManaged, reservedManaged),
			len(obs.Attached), int(live[attachedKey]), otherManaged, reservedManaged,
			fmt.Sprintf("plan again with --reserved-managed %d, or request a higher %s", otherManaged, attachedKey)))
	}
	return out
}

// headroom judges a budget: over the quota fails; other policies using
// more than the plan reserved for them warns, because the next apply or a
// growing fleet would not fit.
func headroom(check, detail string, used, quota, others, reserved int, fix string) Finding {
	f := Finding{Check: check, Status: StatusOK, Detail: detail}
	switch {
	case quota > 0 && used > quota:
		f.Status, f.Fix = StatusFail, fix
	case others > reserved:
		f.Status, f.Fix = StatusWarn, fix
	}
	return f
}

func doctorDatabases(ctx context.Context, c *Clients, o DoctorOptions) []Finding {
	var out []Finding
	dial := o.Dial
	if dial == nil {
		dial = net.DialTimeout
	}
	timeout := o.DialTimeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	dbs := append([]policies.Database(nil), o.Inventory.Databases...)
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].Name < dbs[j].Name })
	for _, db := range dbs {
		id := db.Identifier
		if id == "" {
			id = db.Name
		}
		check := "database " + db.Name
		if db.Kind != policies.KindProxy {
			on, err := iamAuthEnabled(ctx, c, db, id)
			switch {
			case err != nil:
				out = append(out, Finding{Check: check, Status: StatusFail, Detail: err.Error(), Fix: "check the identifier, --region and rds:Describe* permissions"})
			case !on:
				flag := "--instance"
				if db.Kind == policies.KindCluster {
					flag = "--cluster"
				}
				out = append(out, Finding{Check: check, Status: StatusFail, Detail: fmt.Sprintf("IAM database authentication is disabled on %s %s", db.Kind, id),
					Fix: fmt.Sprintf("rdsgate enable-iam-auth --region %s %s %s --apply-immediately", db.Region, flag, id)})
			default:
				out = append(out, Finding{Check: check, Status: StatusOK, Detail: "IAM database authentication is enabled"})
			}
		}
		if db.Endpoint == "" || db.Port == 0 {
			continue
		}
		addr := net.JoinHostPort(db.Endpoint, strconv.Itoa(db.Port))
		start := time.Now()
		conn, err := dial("tcp", addr, timeout)
		if err != nil {
			out = append(out, Finding{Check: "reach " + db.Name, Status: StatusFail, Detail: fmt.Sprintf("cannot open TCP to %s: %v", addr, reachReason(err)),
				Fix: fmt.Sprintf("from this host, `nc -zv %s %d` must connect: the database's security group must allow port %d from here, the endpoint must resolve (private endpoints resolve only inside the VPC), and routing (peering, VPN, Transit Gateway) must reach the VPC",
					db.Endpoint, db.Port, db.Port)})
			continue
		}
		conn.Close()
		out = append(out, Finding{Check: "reach " + db.Name, Status: StatusOK, Detail: fmt.Sprintf("%s answers (%s)", addr, time.Since(start).Round(time.Millisecond))})
	}
	return out
}

func reachReason(err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return "the name does not resolve"
	case errors.As(err, &opErr) && opErr.Timeout():
		return "timed out (a security group or network ACL dropping the packets looks like this)"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused (nothing listens there: wrong port, or the database is stopped)"
	}
	return err.Error()
}

func iamAuthEnabled(ctx context.Context, c *Clients, db policies.Database, id string) (bool, error) {
	api, err := c.RDS(db.Region)
	if err != nil {
		return false, err
	}
	if db.Kind == policies.KindCluster {
		out, err := api.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String(id)})
		if err != nil {
			return false, explain(err, "rds:DescribeDBClusters", "cluster "+id)
		}
		return aws.ToBool(out.DBClusters[0].IAMDatabaseAuthenticationEnabled), nil
	}
	out, err := api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(id)})
	if err != nil {
		return false, explain(err, "rds:DescribeDBInstances", "instance "+id)
	}
	return aws.ToBool(out.DBInstances[0].IAMDatabaseAuthenticationEnabled), nil
}
