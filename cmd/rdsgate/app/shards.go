package app

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/policies"
)

func shardsCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "shards",
		Usage: "plan the rds-db:connect permissions of a fleet into policy shards that fit IAM's limits",
		Subcommands: []*cli.Command{
			{
				Name:  "plan",
				Usage: "plan policy shards for an inventory (no AWS call)",
				Description: "Places every database's rds-db:connect permissions into the inline policy and managed\n" +
					"policies of the base role or user, then into shard roles the base assumes, each document\n" +
					"within IAM's size quotas. With --previous, databases stay where they were unless they must\n" +
					"move, and the steps grant everything before they take anything away.",
				Flags:  planFlags(),
				Action: func(c *cli.Context) error { return shardsPlan(c, cfg) },
			},
		},
	}
}

// planFlags are the flags that shape a plan; apply and drift share them.
func planFlags() []cli.Flag {
	q := policies.DefaultQuotas()
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", EnvVars: []string{"RDSGATE_INVENTORY"}, Usage: "inventory `FILE` of databases (JSON; - for standard input)"},
		&cli.StringFlag{Name: "previous", EnvVars: []string{"RDSGATE_PREVIOUS_PLAN"}, Usage: "the plan in effect, as `FILE`: databases stay where it put them"},
		&cli.StringFlag{Name: "base-role", EnvVars: []string{"RDSGATE_BASE_ROLE"}, Usage: "the proxy's role, as a name or an ARN"},
		&cli.StringFlag{Name: "user", EnvVars: []string{"RDSGATE_USER"}, Usage: "the proxy's IAM user, as a name or an ARN, instead of a role"},
		&cli.StringFlag{Name: "path", Value: "/", Usage: "IAM path of the base role or user"},
		&cli.StringFlag{Name: "account-id", EnvVars: []string{"RDSGATE_ACCOUNT_ID"}, Usage: "AWS account id (needed only for an empty inventory)"},
		&cli.IntFlag{Name: "max-managed", Value: q.AttachedPoliciesPerRole, Usage: "managed policies that may be attached to a role or user (AWS default 10, up to 20)"},
		&cli.StringFlag{Name: "reserved-inline", Value: "0", Usage: "characters of the base principal's inline budget other policies use: a number, or @FILE for a policy document attached inline (repeatable as a,b)"},
		&cli.IntFlag{Name: "reserved-managed", Usage: "managed policies already attached to the base principal by others"},
		&cli.IntFlag{Name: "max-shard-roles", Value: policies.DefaultMaxShardRoles, Usage: "shard roles the plan may create; 0 keeps everything on the base principal"},
		&cli.StringFlag{Name: "shard-role-prefix", Usage: "name prefix of shard roles (default: <base>-shard-)"},
		&cli.StringFlag{Name: "external-id", EnvVars: []string{"RDSGATE_EXTERNAL_ID"}, Usage: "external id the shard roles' trust policies require"},
		&cli.IntFlag{Name: "policy-size", Value: q.PolicySize, Usage: "managed policy size quota, characters"},
		&cli.IntFlag{Name: "role-policy-size", Value: q.RolePolicySize, Usage: "inline policy quota of a role, characters"},
		&cli.IntFlag{Name: "user-policy-size", Value: q.UserPolicySize, Usage: "inline policy quota of a user, characters"},
		&cli.IntFlag{Name: "trust-policy-size", Value: q.AssumeRolePolicySize, Usage: "trust policy size quota, characters"},
		&cli.StringFlag{Name: "format", Value: "json", Usage: "output format: json (the plan) or table"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write the plan as JSON to `FILE`"},
	}
}

// reservedInline reads --reserved-inline: numbers, or @FILE policy documents
// whose IAM size is counted, separated by commas and added up.
func reservedInline(cfg *config, value string) (int, error) {
	total := 0
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if path, ok := strings.CutPrefix(item, "@"); ok {
			data, err := readInput(cfg, "--reserved-inline policy", path)
			if err != nil {
				return 0, err
			}
			doc, err := policies.Parse(data)
			if err != nil {
				return 0, usageError("--reserved-inline %s: %v", item, err)
			}
			total += doc.Size()
			continue
		}
		n, err := strconv.Atoi(item)
		if err != nil || n < 0 {
			return 0, usageError("--reserved-inline %q must be a number of characters or @FILE", item)
		}
		total += n
	}
	return total, nil
}

// planInput reads the flags and files that make a plan.
func planInput(c *cli.Context, cfg *config) (policies.PlanInput, error) {
	var in policies.PlanInput
	invPath := c.String("inventory")
	if invPath == "" {
		return in, usageError("--inventory is required: a JSON file of databases (see 'rdsgate shards plan --help')")
	}
	role, user := c.String("base-role"), c.String("user")
	t := policies.Target{
		Path:            c.String("path"),
		AccountID:       c.String("account-id"),
		MaxShardRoles:   c.Int("max-shard-roles"),
		ShardRolePrefix: c.String("shard-role-prefix"),
		ExternalID:      c.String("external-id"),
		ReservedManaged: c.Int("reserved-managed"),
	}
	reserved, err := reservedInline(cfg, c.String("reserved-inline"))
	if err != nil {
		return in, err
	}
	t.ReservedInline = reserved
	switch {
	case role != "" && user != "":
		return in, usageError("cannot specify --base-role and --user at the same time")
	case role == "" && user == "":
		return in, usageError("name the proxy's principal with --base-role NAME or --user NAME")
	case role != "":
		t.Kind, t.Name = policies.PrincipalRole, role
	default:
		t.Kind, t.Name = policies.PrincipalUser, user
	}
	if strings.HasPrefix(t.Name, "arn:") {
		n, err := policies.ParseIAMARN(t.Name)
		if err != nil || n.Type != string(t.Kind) {
			return in, usageError("%q is not an IAM %s ARN (arn:aws:iam::123456789012:%s/NAME)", t.Name, t.Kind, t.Kind)
		}
		if t.AccountID != "" && t.AccountID != n.AccountID {
			return in, usageError("--account-id %s does not match the account of %s", t.AccountID, t.Name)
		}
		t.Name, t.Path, t.AccountID = n.Name, n.Path, n.AccountID
	}
	q := policies.DefaultQuotas()
	q.PolicySize = c.Int("policy-size")
	q.RolePolicySize = c.Int("role-policy-size")
	q.UserPolicySize = c.Int("user-policy-size")
	q.AssumeRolePolicySize = c.Int("trust-policy-size")
	q.AttachedPoliciesPerRole = c.Int("max-managed")
	q.AttachedPoliciesPerUser = c.Int("max-managed")
	if t.Kind == policies.PrincipalUser && q.AttachedPoliciesPerRole > 20 {
		// Users top out at 20; the role limit only matters for shard roles.
		q.AttachedPoliciesPerUser = 20
	}
	if err := q.Validate(); err != nil {
		return in, usageError("%v", err)
	}
	data, err := readInput(cfg, "inventory", invPath)
	if err != nil {
		return in, err
	}
	inv, err := policies.ParseInventory(data, invPath)
	if err != nil {
		return in, err
	}
	in = policies.PlanInput{Inventory: inv, Target: t, Quotas: q}
	if prev := c.String("previous"); prev != "" {
		data, err := readInput(cfg, "previous plan", prev)
		if err != nil {
			return in, err
		}
		if in.Previous, err = policies.ReadPlan(data, prev); err != nil {
			return in, err
		}
	}
	return in, nil
}

func shardsPlan(c *cli.Context, cfg *config) error {
	format := c.String("format")
	if err := oneOf("format", format, "json", "table"); err != nil {
		return err
	}
	in, err := planInput(c, cfg)
	if err != nil {
		return err
	}
	plan, err := policies.NewPlan(in)
	if err != nil {
		return err
	}
	data, err := plan.JSON()
	if err != nil {
		return err
	}
	if out := c.String("output"); out != "" {
		if err := writeOutput(out, data); err != nil {
			return err
		}
	}
	if format == "json" {
		_, err = cfg.stdout.Write(data)
		return err
	}
	return writePlanTable(cfg.stdout, plan)
}

// writePlanTable shows a plan for people: every document with its fill, the
// steps an apply would take, and the totals.
func writePlanTable(w io.Writer, plan *policies.Plan) error {
	var b strings.Builder
	t := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "PRINCIPAL\tPOLICY\tTYPE\tDATABASES\tCHARACTERS\tFULL")
	for _, pp := range plan.Principals {
		who := string(pp.Kind) + " " + pp.Name
		rows := 0
		for _, managed := range []bool{false, true} {
			list, typ := pp.InlinePolicies, "inline"
			if managed {
				list, typ = pp.ManagedPolicies, "managed"
			}
			for _, pol := range list {
				fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d / %d\t%.1f%%\n", who, pol.Name, typ, len(pol.Databases), pol.Size, pol.Quota, 100*float64(pol.Size)/float64(pol.Quota))
				who = ""
				rows++
			}
		}
		if rows == 0 {
			fmt.Fprintf(t, "%s\t(none)\t\t0\t\t\n", who)
		}
	}
	t.Flush()
	s := plan.Stats
	fmt.Fprintf(&b, "\n%d databases on %d principals in %d documents (lower bound %d), %d of %d characters used\n",
		s.Databases, s.Principals, s.Documents, s.LowerBound, s.Characters, s.Capacity)
	fmt.Fprintf(&b, "since the previous plan: %d added, %d removed, %d moved; %d documents to write\n", s.Added, s.Removed, s.Moved, s.Written)
	if len(plan.Steps) == 0 {
		b.WriteString("\nNo changes: AWS needs no writes for this plan.\n")
	} else {
		fmt.Fprintf(&b, "\nSteps (every grant before any revoke, so access never has a gap)\n")
		const show = 25
		for i, st := range plan.Steps {
			if i == show {
				fmt.Fprintf(&b, "  ... and %d more (see --format json)\n", len(plan.Steps)-show)
				break
			}
			line := fmt.Sprintf("  %3d. %-8s %-22s %s %s", i+1, st.Phase, st.Action, st.Kind, st.Principal)
			if st.Policy != "" {
				line += " / " + st.Policy
			}
			if n := len(st.Adds); n > 0 {
				line += fmt.Sprintf(" (+%d", n)
				if m := len(st.Removes); m > 0 {
					line += fmt.Sprintf(", -%d", m)
				}
				line += ")"
			} else if m := len(st.Removes); m > 0 {
				line += fmt.Sprintf(" (-%d)", m)
			}
			b.WriteString(line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
