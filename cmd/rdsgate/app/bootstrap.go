package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func bootstrapCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "bootstrap",
		Usage: "print or create the IAM permissions the rdsgate proxy needs",
		Subcommands: []*cli.Command{
			{
				Name:  "print-iam",
				Usage: "print the proxy's IAM policy (no AWS call, no credentials needed)",
				Description: "Prints the identity policy the proxy's role or user needs, and in automatic mode the\n" +
					"permissions boundary that caps what the proxy may grant itself. --format text explains\n" +
					"every statement and shows the commands that attach it.",
				Flags:  principalFlags(),
				Action: func(c *cli.Context) error { return printIAM(c, cfg) },
			},
			{
				Name:  "create-iam",
				Usage: "create or update the proxy's IAM policy (and boundary) on its role or user",
				Description: "Writes what print-iam prints: in automatic mode the permissions boundary first, then the\n" +
					"boundary on the principal, then the inline policy, so the proxy never holds IAM write\n" +
					"permission without its cap. Shows the changes and asks at a terminal; --yes for CI,\n" +
					"--dry-run to stop at the diff. A second run writes nothing.",
				Flags:  createIAMFlags(),
				Action: func(c *cli.Context) error { return createIAM(c, cfg) },
			},
		},
	}
}

func createIAMFlags() []cli.Flag {
	var flags []cli.Flag
	for _, f := range principalFlags() {
		if n := f.Names()[0]; n != "document" && n != "format" {
			flags = append(flags, f)
		}
	}
	flags = append(flags, &cli.BoolFlag{Name: "keep-existing-permissions",
		Usage: "also allow in the permissions boundary what the principal's other policies allow, so setting it takes nothing away"})
	flags = append(flags, awsFlags()...)
	return append(flags, confirmFlags()...)
}

func createIAM(c *cli.Context, cfg *config) error {
	o, err := bootstrapOptions(c)
	if err != nil {
		return err
	}
	if o.Name == "" {
		return usageError("create-iam attaches the policy to the proxy's principal: give --role NAME or --user NAME")
	}
	aws, err := connectAWS(c)
	if err != nil {
		return err
	}
	partition := o.Partition
	if partition == "" {
		partition = policies.PartitionAWS
	}
	aws.UseIAMRegion(partition)
	if o.AccountID == "" {
		if o.AccountID, _, err = bootstrap.CallerAccount(c.Context, aws); err != nil {
			return err
		}
	}
	bp, err := policies.NewBootstrapPolicy(o)
	if err != nil {
		return err
	}
	keep := c.Bool("keep-existing-permissions")
	bp, cuts, err := bootstrap.FitBoundary(c.Context, aws, bp, keep)
	if err != nil {
		return err
	}
	if err := bp.Check(policies.DefaultQuotas()); err != nil {
		return err
	}
	switch {
	case len(cuts) > 0 && keep:
		fmt.Fprintf(cfg.stderr, "note: the permissions boundary keeps what %s %s's other policies allow: %s\n", o.Kind, o.Name, policies.DescribeCuts(cuts))
	case len(cuts) > 0:
		fmt.Fprintf(cfg.stderr, "warning: the permissions boundary %s would cut what %s %s's other policies allow: %s.\n"+
			"  A boundary caps everything the %s does: once it is set, AWS answers AccessDenied to these.\n"+
			"  Keep them with --keep-existing-permissions, set no boundary with --manual, or move those policies to another role.\n",
			bp.BoundaryName, o.Kind, o.Name, policies.DescribeCuts(cuts), o.Kind)
	}
	changes, err := bootstrap.PlanBootstrap(c.Context, aws, bp)
	if err != nil {
		return err
	}
	out := cfg.stdout
	pending := 0
	fmt.Fprintf(out, "rdsgate bootstrap for %s %q in account %s:\n", o.Kind, o.Name, o.AccountID)
	for _, ch := range changes {
		mark := map[string]string{"create": "+", "update": "~", "unchanged": "="}[ch.Action]
		fmt.Fprintf(out, "  %s %-9s %s\n", mark, ch.Action, ch.What)
		if ch.Action != "unchanged" {
			pending++
		}
		if ch.Action == "update" {
			added, removed := ch.Diff()
			for _, a := range added {
				fmt.Fprintf(out, "        + %s\n", a)
			}
			for _, r := range removed {
				fmt.Fprintf(out, "        - %s\n", r)
			}
		}
	}
	if pending == 0 {
		fmt.Fprintln(out, "Nothing to change.")
		return nil
	}
	if c.Bool("dry-run") {
		fmt.Fprintln(out, "Dry run: nothing was written.")
		return nil
	}
	if err := confirm(c, cfg, fmt.Sprintf("Make %s in account %s?", policies.Count(pending, "change"), o.AccountID)); err != nil {
		return err
	}
	if err := bootstrap.ApplyChanges(c.Context, changes); err != nil {
		return err
	}
	fmt.Fprintf(out, "Done: %s made.\n", policies.Count(pending, "change"))
	return nil
}

// principalFlags are the flags print-iam and create-iam share.
func principalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "types", Value: cli.NewStringSlice(policies.TypeRDS), EnvVars: []string{"RDSGATE_TYPES"},
			Usage: "database types the proxy serves: " + strings.Join(policies.BootstrapTypes, ",") + " (aurora, as discover calls clusters, is rds)"},
		&cli.StringFlag{Name: "role", Aliases: []string{"base-role"}, EnvVars: []string{"RDSGATE_ROLE"}, Usage: "the proxy's IAM role, as a name or an ARN"},
		&cli.StringFlag{Name: "user", EnvVars: []string{"RDSGATE_USER"}, Usage: "the proxy's IAM user, as a name or an ARN"},
		&cli.StringFlag{Name: "path", Value: "/", Usage: "IAM path of the role or user"},
		&cli.StringSliceFlag{Name: "assume-role-arn", Usage: "a role the proxy may assume (repeat for several)"},
		&cli.BoolFlag{Name: "manual", Usage: "leave out every IAM write: an administrator applies connect policies and enables IAM auth"},
		&cli.StringFlag{Name: "account-id", EnvVars: []string{"RDSGATE_ACCOUNT_ID"}, Usage: "AWS account id for ARNs (default: * in IAM ARNs)"},
		&cli.StringFlag{Name: "partition", Value: policies.PartitionAWS, EnvVars: []string{"RDSGATE_PARTITION"}, Usage: "AWS partition: " + strings.Join(policies.Partitions(), ", ")},
		&cli.StringFlag{Name: "format", Value: "text", Usage: "output format: text or json"},
		&cli.StringFlag{Name: "document", Usage: "print only one document, as JSON: policy or boundary (for --policy-document file://)"},
	}
}

// bootstrapOptions reads the principal flags.
func bootstrapOptions(c *cli.Context) (policies.BootstrapOptions, error) {
	o := policies.BootstrapOptions{
		Types:          splitList(c.StringSlice("types")),
		Path:           c.String("path"),
		AccountID:      c.String("account-id"),
		Partition:      c.String("partition"),
		AssumeRoleARNs: splitList(c.StringSlice("assume-role-arn")),
		Manual:         c.Bool("manual"),
	}
	role, user := c.String("role"), c.String("user")
	switch {
	case role != "" && user != "":
		return o, usageError("cannot specify --role and --user at the same time")
	case role != "":
		o.Kind, o.Name = policies.PrincipalRole, role
	case user != "":
		o.Kind, o.Name = policies.PrincipalUser, user
	}
	if strings.HasPrefix(o.Name, "arn:") {
		n, err := policies.ParseIAMARN(o.Name)
		if err != nil || string(o.Kind) != n.Type {
			return o, usageError("--%s %q is not an IAM %s ARN (arn:aws:iam::123456789012:%s/NAME)", o.Kind, o.Name, o.Kind, o.Kind)
		}
		if c.IsSet("account-id") && o.AccountID != n.AccountID {
			return o, usageError("--account-id %s does not match the account of --%s (%s)", o.AccountID, o.Kind, n.AccountID)
		}
		if c.IsSet("partition") && o.Partition != n.Partition {
			return o, usageError("--partition %s does not match the partition of --%s (%s)", o.Partition, o.Kind, n.Partition)
		}
		o.Name, o.Path, o.AccountID, o.Partition = n.Name, n.Path, n.AccountID, n.Partition
	}
	return o, nil
}

func printIAM(c *cli.Context, cfg *config) error {
	format, only := c.String("format"), c.String("document")
	if err := oneOf("format", format, "text", "json"); err != nil {
		return err
	}
	if only != "" {
		if err := oneOf("document", only, "policy", "boundary"); err != nil {
			return err
		}
	}
	o, err := bootstrapOptions(c)
	if err != nil {
		return err
	}
	bp, err := policies.NewBootstrapPolicy(o)
	if err != nil {
		return err
	}
	if err := bp.Check(policies.DefaultQuotas()); err != nil {
		return err
	}
	out := cfg.stdout
	switch {
	case only == "policy":
		return writeJSON(out, json.RawMessage(bp.Policy.JSON()))
	case only == "boundary" && bp.Boundary == nil:
		return usageError("--manual has no permissions boundary: the proxy gets no IAM write permission to cap")
	case only == "boundary":
		return writeJSON(out, json.RawMessage(bp.Boundary.JSON()))
	case format == "json":
		v := struct {
			PrincipalARN string          `json:"principal_arn,omitempty"`
			PolicyName   string          `json:"policy_name"`
			Policy       json.RawMessage `json:"policy"`
			BoundaryName string          `json:"boundary_name,omitempty"`
			BoundaryARN  string          `json:"boundary_arn,omitempty"`
			Boundary     json.RawMessage `json:"boundary,omitempty"`
		}{PrincipalARN: bp.PrincipalARN, PolicyName: policies.BootstrapPolicyName, Policy: bp.Policy.JSON(),
			BoundaryName: bp.BoundaryName, BoundaryARN: bp.BoundaryARN}
		if bp.Boundary != nil {
			v.Boundary = bp.Boundary.JSON()
		}
		return writeJSON(out, v)
	}
	return writeBootstrapText(out, bp, reproduceFlags(c))
}

// writeJSON writes indented JSON without HTML escaping.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func indentJSON(doc *policies.Document) string {
	var b bytes.Buffer
	_ = json.Indent(&b, doc.JSON(), "  ", "  ")
	return "  " + b.String()
}

// reproduceFlags gives back the flags of this run that shape the policy, so
// the printed commands can be copied as they are.
func reproduceFlags(c *cli.Context) string {
	var parts []string
	for _, name := range []string{"types", "role", "user", "path", "assume-role-arn", "manual", "account-id", "partition"} {
		if !c.IsSet(name) {
			continue
		}
		switch name {
		case "manual":
			parts = append(parts, "--manual")
		case "types":
			parts = append(parts, "--types "+shellQuote(strings.Join(splitList(c.StringSlice(name)), ",")))
		case "assume-role-arn":
			for _, a := range splitList(c.StringSlice(name)) {
				parts = append(parts, "--assume-role-arn "+shellQuote(a))
			}
		default:
			parts = append(parts, "--"+name+" "+shellQuote(c.String(name)))
		}
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r == '=' || r == '@' || r == ',' || r == '+' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeBootstrapText(w io.Writer, bp *policies.BootstrapPolicy, flags string) error {
	o := bp.Options
	var b strings.Builder
	who := "the proxy's " + string(o.Kind)
	if o.Name != "" {
		who = fmt.Sprintf("%s %q", o.Kind, o.Name)
	}
	account := o.AccountID
	if account == "*" {
		account = "not given (IAM ARNs use *, which IAM limits to the policy's own account)"
	}
	fmt.Fprintf(&b, "rdsgate bootstrap policy for %s\n", who)
	fmt.Fprintf(&b, "  types:     %s\n", strings.Join(o.Types, ", "))
	fmt.Fprintf(&b, "  account:   %s\n", account)
	fmt.Fprintf(&b, "  partition: %s\n", o.Partition)
	if o.Manual {
		b.WriteString("  mode:      manual: no IAM write permission; an administrator applies the rds-db:connect\n" +
			"             policies (rdsgate shards apply) and enables IAM auth (rdsgate enable-iam-auth)\n")
	} else {
		b.WriteString("  mode:      automatic: the proxy manages the rds-db:connect policy of its own principal,\n" +
			"             capped by a permissions boundary so it can grant itself nothing else\n")
	}
	b.WriteString("\nStatements\n")
	for i, e := range bp.Explanations {
		st := bp.Policy.Statements[i]
		fmt.Fprintf(&b, "  %d. %s: %s\n", i+1, e.Sid, e.Why)
		fmt.Fprintf(&b, "     allow    %s\n", strings.Join(st.Action.List, ", "))
		fmt.Fprintf(&b, "     on       %s\n", strings.Join(st.Resource.List, ", "))
		for _, op := range slices.Sorted(maps.Keys(st.Condition)) {
			for _, k := range slices.Sorted(maps.Keys(st.Condition[op])) {
				fmt.Fprintf(&b, "     when     %s %s %s\n", k, op, strings.Join(st.Condition[op][k].List, ", "))
			}
		}
		if e.Note != "" {
			fmt.Fprintf(&b, "     note     %s\n", e.Note)
		}
	}
	q := policies.DefaultQuotas()
	limit := q.RolePolicySize
	if o.Kind == policies.PrincipalUser {
		limit = q.UserPolicySize
	}
	fmt.Fprintf(&b, "\nPolicy %s (%d of the %d characters a %s's inline policies may use)\n%s\n",
		policies.BootstrapPolicyName, bp.Policy.Size(), limit, o.Kind, indentJSON(bp.Policy))
	fmt.Fprintf(&b, "  Attached inline, it uses %d characters of the %s's inline budget: plan connect shards on the\n"+
		"  same %s with --reserved-inline @rdsgate-bootstrap.json (the file made below).\n", bp.Policy.Size(), o.Kind, o.Kind)
	if bp.Boundary != nil {
		fmt.Fprintf(&b, "\nPermissions boundary %s (%d of %d characters): the statements above and rds-db:connect in this account\n%s\n",
			bp.BoundaryName, bp.Boundary.Size(), q.PolicySize, indentJSON(bp.Boundary))
	}
	name := o.Name
	if name == "" {
		name = strings.ToUpper(string(o.Kind)) + "_NAME"
	}
	self := "rdsgate bootstrap print-iam " + flags
	self = strings.TrimSpace(self)
	b.WriteString("\nTo attach it with the AWS CLI\n")
	fmt.Fprintf(&b, "  %s --document policy > rdsgate-bootstrap.json\n", self)
	fmt.Fprintf(&b, "  aws iam put-%s-policy --%s-name %s --policy-name %s --policy-document file://rdsgate-bootstrap.json\n",
		o.Kind, o.Kind, name, policies.BootstrapPolicyName)
	if bp.Boundary != nil {
		fmt.Fprintf(&b, "  %s --document boundary > rdsgate-boundary.json\n", self)
		fmt.Fprintf(&b, "  aws iam create-policy --path %s --policy-name %s --policy-document file://rdsgate-boundary.json\n",
			policies.ManagedPolicyPath, bp.BoundaryName)
		fmt.Fprintf(&b, "  aws iam put-%s-permissions-boundary --%s-name %s --permissions-boundary %s\n", o.Kind, o.Kind, name, bp.BoundaryARN)
	}
	if o.Name != "" {
		fmt.Fprintf(&b, "\nOr let rdsgate make exactly these changes (it shows them and asks first)\n  %s\n", strings.TrimSpace("rdsgate bootstrap create-iam "+flags))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
