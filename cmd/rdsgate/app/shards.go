package app

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func shardsCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "shards",
		Usage: "plan the rds-db:connect permissions of a fleet into policy shards that fit IAM's limits",
		Subcommands: []*cli.Command{
			{
				Name:  "plan",
				Usage: "plan policy shards for an inventory, against what IAM holds when AWS credentials are at hand",
				Description: "Places every database's rds-db:connect permissions into the inline policy and managed\n" +
					"policies of the base role or user, then into shard roles the base assumes, each document\n" +
					"within IAM's size quotas. With AWS credentials it reads what IAM holds (read-only): databases\n" +
					"stay where IAM has them unless they must move, the base's other policies are reserved and\n" +
					"the account's quotas used. --previous PLAN does the same from a plan file without AWS;\n" +
					"--fresh plans from scratch. Without credentials it plans from scratch and says so.",
				Flags:  append(planFlags(), append([]cli.Flag{&cli.BoolFlag{Name: "fresh", Usage: "plan from scratch: ignore what IAM holds (apply still orders its writes with no gap)"}}, awsFlags()...)...),
				Action: func(c *cli.Context) error { return shardsPlan(c, cfg) },
			},
			{
				Name:  "apply",
				Usage: "make IAM hold a shard plan: roles, trust policies, inline and managed policies",
				Description: "Reads what IAM holds, works out the writes, shows them and asks (at a terminal), then\n" +
					"writes every grant before anything is taken away, so no database is unreachable while it\n" +
					"runs. Everything it creates is tagged rdsgate:managed=true; nothing without that tag is\n" +
					"changed or deleted. A second run with the same input writes nothing, and a run that was\n" +
					"stopped converges when run again. --inventory plans against what IAM holds and applies.",
				Flags:  applyFlags(),
				Action: func(c *cli.Context) error { return shardsApply(c, cfg) },
			},
		},
	}
}

// planInputFlags are the flags that say what to plan (inventory, target,
// quotas) without the plan command's output flags: for commands that take a
// plan or make one on the fly (shards apply, drift).
func planInputFlags() []cli.Flag {
	var flags []cli.Flag
	for _, f := range planFlags() {
		switch f.Names()[0] {
		case "format", "output", "previous":
			continue
		}
		flags = append(flags, f)
	}
	return flags
}

// applyFlags are plan's flags without its output ones, plus the plan file,
// AWS and confirmation flags.
func applyFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "plan", EnvVars: []string{"RDSGATE_PLAN"}, Usage: "plan `FILE` written by shards plan (or use --inventory)"},
	}
	flags = append(flags, planInputFlags()...)
	flags = append(flags, awsFlags()...)
	flags = append(flags, confirmFlags()...)
	flags = append(flags, &cli.DurationFlag{Name: "lease-wait", Value: 2 * time.Minute, EnvVars: []string{"RDSGATE_LEASE_WAIT"},
		Usage: "how long to wait while another apply holds the base principal's lease (exit 75 after that)"})
	return append(flags,
		&cli.StringFlag{Name: "format", Value: "text", Usage: "report format: text or json"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the applied plan as JSON to `FILE` (keep it for drift and the proxy)"},
	)
}

// planFlags are the flags that shape a plan; apply and drift share them.
func planFlags() []cli.Flag {
	q := policies.DefaultQuotas()
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", EnvVars: []string{"RDSGATE_INVENTORY"}, Usage: "inventory `FILE` of databases (JSON; - for standard input)"},
		&cli.StringFlag{Name: "previous", EnvVars: []string{"RDSGATE_PREVIOUS_PLAN"}, Usage: "the plan in effect, as `FILE`: databases stay where it put them"},
		&cli.StringFlag{Name: "base-role", Aliases: []string{"role"}, EnvVars: []string{"RDSGATE_BASE_ROLE"}, Usage: "the proxy's role, as a name or an ARN"},
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
	if c.Bool("fresh") && in.Previous != nil {
		return usageError("cannot specify --fresh and --previous at the same time")
	}
	plan, err := planFromIAM(c, cfg, in)
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

// planFromIAM plans against what IAM holds when it can: with --previous or
// --fresh it does not look, without credentials it plans from scratch and
// says what that means.
func planFromIAM(c *cli.Context, cfg *config, in policies.PlanInput) (*policies.Plan, error) {
	if in.Previous != nil || c.Bool("fresh") {
		return policies.NewPlan(in)
	}
	clients, why := awsIfAvailable(c)
	if clients == nil {
		fmt.Fprintf(cfg.stderr, "note: planned from scratch, without what IAM holds (%s): databases IAM already grants may move to other documents. "+
			"shards apply still orders its writes so that access has no gap, but may write more; give AWS credentials or --previous PLAN to keep them where they are, or --fresh to say this is intended\n", why)
		return policies.NewPlan(in)
	}
	plan, obs, err := bootstrap.PlanAgainstAWS(c.Context, clients, in, planOptions(c))
	if errors.Is(err, bootstrap.ErrNoBase) {
		fmt.Fprintf(cfg.stderr, "note: planned from scratch: %s %s does not exist yet in the account\n", in.Target.Kind, in.Target.Name)
		return policies.NewPlan(in)
	}
	if err != nil {
		return nil, fmt.Errorf("reading what IAM holds to plan against it (pass --fresh to plan without AWS): %w", err)
	}
	inline, managed, names := obs.Reservations(in.Target.Name)
	if planOptions(c).Reserve && (inline > 0 || managed > 0) {
		fmt.Fprintf(cfg.stderr, "note: reserved %d inline characters and %d managed policy slots of %s %s for its other policies (%s)\n",
			inline, managed, in.Target.Kind, in.Target.Name, strings.Join(names, ", "))
	}
	return plan, nil
}

// planOptions takes from the account what the command line left unsaid.
func planOptions(c *cli.Context) bootstrap.PlanOptions {
	quotasSet := false
	for _, f := range []string{"policy-size", "role-policy-size", "user-policy-size", "trust-policy-size", "max-managed"} {
		quotasSet = quotasSet || c.IsSet(f)
	}
	return bootstrap.PlanOptions{Reserve: !c.IsSet("reserved-inline") && !c.IsSet("reserved-managed"), Quotas: !quotasSet}
}

func shardsApply(c *cli.Context, cfg *config) error {
	format := c.String("format")
	if err := oneOf("format", format, "text", "json"); err != nil {
		return err
	}
	planPath, invPath := c.String("plan"), c.String("inventory")
	switch {
	case planPath != "" && invPath != "":
		return usageError("cannot specify --plan and --inventory at the same time")
	case planPath == "" && invPath == "":
		return usageError("give the plan to apply with --plan FILE, or plan and apply in one go with --inventory FILE")
	}
	var desired *policies.Plan
	var in policies.PlanInput
	if planPath != "" {
		data, err := readInput(cfg, "plan", planPath)
		if err != nil {
			return err
		}
		if desired, err = policies.ReadPlan(data, planPath); err != nil {
			return err
		}
		if err := desired.Check(); err != nil {
			return err
		}
	} else {
		var err error
		if in, err = planInput(c, cfg); err != nil {
			return err
		}
	}
	aws, err := connectAWS(c)
	if err != nil {
		return err
	}
	if desired == nil {
		if desired, _, err = bootstrap.PlanAgainstAWS(c.Context, aws, in, planOptions(c)); err != nil {
			return err
		}
	}
	dry, err := bootstrap.ApplyPlan(c.Context, aws, desired, bootstrap.ApplyOptions{DryRun: true})
	if err != nil {
		return err
	}
	out := cfg.stdout
	if format == "text" {
		for _, f := range dry.Foreign {
			fmt.Fprintf(cfg.stderr, "note: %s has rdsgate's name but not its tag; left alone\n", f)
		}
	}
	if len(dry.Steps) == 0 {
		if format == "json" {
			return writeJSON(out, applyJSON(desired, dry, false))
		}
		fmt.Fprintf(out, "IAM already holds this plan (%s on %s): nothing to write.\n", policies.Count(desired.Stats.Databases, "database"), policies.Count(len(desired.Principals), "principal"))
		return writePlanOutput(c, desired)
	}
	if format == "text" {
		fmt.Fprintf(out, "%s to make account %s hold the plan for %s:\n", policies.Count(len(dry.Steps), "step"), desired.AccountID, policies.Count(desired.Stats.Databases, "database"))
		writeSteps(out, stepsOf(dry))
	}
	if c.Bool("dry-run") {
		if format == "json" {
			return writeJSON(out, applyJSON(desired, dry, false))
		}
		fmt.Fprintln(out, "Dry run: nothing was written.")
		return nil
	}
	if err := confirm(c, cfg, fmt.Sprintf("Apply %s to account %s?", policies.Count(len(dry.Steps), "step"), desired.AccountID)); err != nil {
		return err
	}
	report, err := bootstrap.ApplyPlan(c.Context, aws, desired, bootstrap.ApplyOptions{Progress: newProgress(cfg.stderr, isTerminal(cfg.stderr)),
		Lease: bootstrap.LeaseOptions{Wait: c.Duration("lease-wait")}})
	if err != nil {
		if done := report.Done; done > 0 && !errors.Is(err, bootstrap.ErrPreflight) {
			return fmt.Errorf("%w\n%d of %d steps were done, and nothing still needed was taken away. To finish, run the same command again: %s",
				err, done, len(report.Steps), commandLine(cfg.args))
		}
		return err
	}
	if err := writePlanOutput(c, desired); err != nil {
		return err
	}
	if format == "json" {
		if err := writeJSON(out, applyJSON(desired, report, true)); err != nil {
			return err
		}
	} else {
		writeApplySummary(out, desired, report)
	}
	if broken := report.BrokenChains(); len(broken) > 0 {
		for _, h := range broken {
			fmt.Fprintf(cfg.stderr, "%s cannot assume %s: %s\n", h.From, h.To, strings.Join(h.Problems, "; "))
			for _, f := range h.Fixes {
				fmt.Fprintf(cfg.stderr, "  fix: %s\n", f)
			}
		}
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("applied, but the base principal cannot assume %s; the proxy cannot reach their databases until that is fixed", policies.Count(len(broken), "shard role"))}
	}
	return nil
}

func writePlanOutput(c *cli.Context, plan *policies.Plan) error {
	path := c.String("output")
	if path == "" {
		return nil
	}
	data, err := plan.JSON()
	if err != nil {
		return err
	}
	return writeOutput(path, data)
}

func stepsOf(r *bootstrap.ApplyReport) []policies.Step {
	steps := make([]policies.Step, len(r.Steps))
	for i, s := range r.Steps {
		steps[i] = s.Step
	}
	return steps
}

func applyJSON(plan *policies.Plan, r *bootstrap.ApplyReport, applied bool) any {
	type step struct {
		policies.Step
		Writes int `json:"writes"`
	}
	steps := make([]step, len(r.Steps))
	for i, s := range r.Steps {
		steps[i] = step{s.Step, s.Writes}
	}
	return struct {
		Applied   bool     `json:"applied"`
		AccountID string   `json:"account_id"`
		Databases int      `json:"databases"`
		Steps     []step   `json:"steps"`
		Calls     int      `json:"api_calls"`
		Writes    int      `json:"api_writes"`
		Seconds   float64  `json:"seconds"`
		Foreign   []string `json:"left_alone,omitempty"`
	}{applied, plan.AccountID, plan.Stats.Databases, steps, r.Calls, r.Writes, r.Elapsed.Seconds(), r.Foreign}
}

// writeApplySummary is the table an apply ends with: what changed per
// principal.
func writeApplySummary(w io.Writer, plan *policies.Plan, r *bootstrap.ApplyReport) {
	type row struct {
		role                           string
		written, deleted, total, order int
	}
	rows := map[string]*row{}
	for i, pp := range plan.Principals {
		n := len(pp.InlinePolicies) + len(pp.ManagedPolicies)
		rows[string(pp.Kind)+" "+pp.Name] = &row{role: "-", total: n, order: i}
	}
	for _, s := range r.Steps {
		key := string(s.Step.Kind) + " " + s.Step.Principal
		rw := rows[key]
		if rw == nil {
			rw = &row{role: "-", order: len(rows)}
			rows[key] = rw
		}
		switch s.Step.Action {
		case policies.ActionCreateRole:
			rw.role = "created"
		case policies.ActionUpdateTrust:
			rw.role = "trust updated"
		case policies.ActionDeleteRole:
			rw.role = "deleted"
		case policies.ActionPutInline, policies.ActionPutManaged:
			rw.written++
		case policies.ActionDeleteInline, policies.ActionDeleteManaged:
			rw.deleted++
		}
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return rows[keys[i]].order < rows[keys[j]].order })
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "\nPRINCIPAL\tROLE\tWRITTEN\tDELETED\tUNCHANGED")
	for _, k := range keys {
		rw := rows[k]
		fmt.Fprintf(t, "%s\t%s\t%d\t%d\t%d\n", k, rw.role, rw.written, rw.deleted, max(0, rw.total-rw.written))
	}
	t.Flush()
	fmt.Fprintf(w, "\nApplied %s: %s (%s) in %s.\n", policies.Count(len(r.Steps), "step"), policies.Count(r.Calls, "API call"), policies.Count(r.Writes, "write"), r.Elapsed.Round(time.Millisecond))
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
	fmt.Fprintf(&b, "\n%s on %s in %s (lower bound %d), %d of %d characters used\n",
		policies.Count(s.Databases, "database"), policies.Count(s.Principals, "principal"), policies.Count(s.Documents, "document"), s.LowerBound, s.Characters, s.Capacity)
	fmt.Fprintf(&b, "since the previous plan: %d added, %d removed, %d moved; %s to write\n", s.Added, s.Removed, s.Moved, policies.Count(s.Written, "document"))
	if len(plan.Steps) == 0 {
		b.WriteString("\nNo changes: AWS needs no writes for this plan.\n")
	} else {
		fmt.Fprintf(&b, "\nSteps (ordered so that every database keeps a grant after each write: access never has a gap)\n")
		writeSteps(&b, plan.Steps)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSteps lists steps, the first 25 of them in full.
func writeSteps(w io.Writer, steps []policies.Step) {
	const show = 25
	for i, st := range steps {
		if i == show {
			fmt.Fprintf(w, "  ... and %d more (see --format json)\n", len(steps)-show)
			break
		}
		line := fmt.Sprintf("  %3d. %-8s %-22s %s", i+1, st.Phase, st.Action, strings.TrimPrefix(st.String(), st.Action+" "))
		fmt.Fprintln(w, line)
	}
}

// commandLine shows argv as a shell command, quoting what needs it.
func commandLine(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if i == 0 {
			a = "rdsgate"
		}
		if a == "" || strings.ContainsAny(a, " '\"$`\\*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
