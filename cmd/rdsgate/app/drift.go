package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func driftCommand(cfg *config) *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "plan", EnvVars: []string{"RDSGATE_PLAN"}, Usage: "the applied plan `FILE` (or use --inventory)"},
	}
	flags = append(flags, planInputFlags()...)
	flags = append(flags, awsFlags()...)
	flags = append(flags, &cli.StringFlag{Name: "format", Value: "text", Usage: "text, json, or github (annotations for GitHub Actions)"})
	return &cli.Command{
		Name:  "drift",
		Usage: "compare IAM with the plan: exit 0 when equal, 2 on drift, 1 on error",
		Description: "Compares by meaning: statement order, white space and string-or-list forms do not count;\n" +
			"a statement added or removed by hand does, as do missing, unattached or extra documents,\n" +
			"roles and trust relationships. Policies rdsgate does not manage are listed, not judged.\n" +
			"With --inventory the desired state is planned against what IAM holds.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			// drift's exit codes are its answer: every error is 1, drift is 2.
			if err := drift(c, cfg); err != nil {
				var ee *ExitError
				if errors.As(err, &ee) && ee.Code == ExitFinding && ee.Silent {
					return err
				}
				return &ExitError{Code: ExitFailure, Err: err}
			}
			return nil
		},
	}
}

func drift(c *cli.Context, cfg *config) error {
	format := c.String("format")
	if err := oneOf("format", format, "text", "json", "github"); err != nil {
		return err
	}
	aws, desired, err := desiredPlan(c, cfg)
	if err != nil {
		return err
	}
	r, err := bootstrap.Drift(c.Context, aws, desired)
	if err != nil {
		return err
	}
	out := cfg.stdout
	switch format {
	case "json":
		if err := writeJSON(out, struct {
			Drifted bool `json:"drifted"`
			*bootstrap.DriftReport
		}{r.Drifted(), r}); err != nil {
			return err
		}
	case "github":
		for _, f := range r.Findings {
			msg := f.String()
			for _, a := range f.Added {
				msg += "\n+ " + a + " (in AWS, not in the plan)"
			}
			for _, d := range f.Removed {
				msg += "\n- " + d + " (in the plan, not in AWS)"
			}
			fmt.Fprintf(out, "::error title=%s::%s\n", ghEscape("rdsgate drift", true), ghEscape(msg, false))
		}
		for _, u := range r.Bootstrap {
			fmt.Fprintf(out, "::notice title=%s::%s\n", ghEscape("rdsgate", true), ghEscape(u+": written by rdsgate bootstrap create-iam, not part of the plan", false))
		}
		for _, u := range r.Unjudged {
			fmt.Fprintf(out, "::notice title=%s::%s\n", ghEscape("rdsgate", true), ghEscape(u+": not managed by rdsgate, not judged", false))
		}
		if !r.Drifted() {
			fmt.Fprintln(out, "No drift: IAM holds the plan.")
		}
	default:
		writeDriftText(out, desired, r)
	}
	if r.Drifted() {
		return &ExitError{Code: ExitFinding, Err: fmt.Errorf("drift"), Silent: true}
	}
	return nil
}

// desiredPlan reads --plan, or plans --inventory against what IAM holds.
func desiredPlan(c *cli.Context, cfg *config) (*bootstrap.Clients, *policies.Plan, error) {
	planPath, invPath := c.String("plan"), c.String("inventory")
	switch {
	case planPath != "" && invPath != "":
		return nil, nil, usageError("cannot specify --plan and --inventory at the same time")
	case planPath == "" && invPath == "":
		return nil, nil, usageError("give the applied plan with --plan FILE, or --inventory FILE to plan against IAM")
	}
	var desired *policies.Plan
	var in policies.PlanInput
	if planPath != "" {
		data, err := readInput(cfg, "plan", planPath)
		if err != nil {
			return nil, nil, err
		}
		if desired, err = policies.ReadPlan(data, planPath); err != nil {
			return nil, nil, err
		}
		if err := desired.Check(); err != nil {
			return nil, nil, err
		}
	} else {
		var err error
		if in, err = planInput(c, cfg); err != nil {
			return nil, nil, err
		}
	}
	aws, err := connectAWS(c)
	if err != nil {
		return nil, nil, err
	}
	if desired == nil {
		if desired, _, err = bootstrap.PlanAgainstAWS(c.Context, aws, in, planOptions(c)); err != nil {
			return nil, nil, err
		}
	}
	return aws, desired, nil
}

func writeDriftText(w io.Writer, plan *policies.Plan, r *bootstrap.DriftReport) {
	if !r.Drifted() {
		fmt.Fprintf(w, "No drift: IAM holds the plan (%s, %s).\n", policies.Count(len(plan.Principals), "principal"), policies.Count(plan.Stats.Documents, "document"))
	} else {
		fmt.Fprintf(w, "Drift: %s between IAM and the plan\n", policies.Count(len(r.Findings), "difference"))
		for _, f := range r.Findings {
			fmt.Fprintf(w, "  %s\n", f)
			for _, a := range f.Added {
				fmt.Fprintf(w, "      + %s   (in AWS, not in the plan)\n", a)
			}
			for _, d := range f.Removed {
				fmt.Fprintf(w, "      - %s   (in the plan, not in AWS)\n", d)
			}
		}
	}
	if len(r.Bootstrap) > 0 {
		fmt.Fprintln(w, "Written by rdsgate bootstrap create-iam, not part of the plan (its --dry-run says whether they are current):")
		for _, u := range r.Bootstrap {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	if len(r.Unjudged) > 0 {
		fmt.Fprintln(w, "Not managed by rdsgate (listed, not judged):")
		for _, u := range r.Unjudged {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	if r.Drifted() {
		fmt.Fprintln(w, "Bring IAM back to the plan with: rdsgate shards apply --plan FILE")
	}
}

// statusSkip marks a group of doctor's checks that had nothing to check.
const statusSkip = "skip"

// doctorInput reads the file doctor checks for --plan or --inventory: the
// flag's, or else the file of that name in the working directory, which is
// where the README's commands write it (doctor says it used it). No path and
// nil data when there is neither.
func doctorInput(c *cli.Context, cfg *config, flag, name string) (path string, data []byte, err error) {
	path = c.String(flag)
	if path == "" {
		if st, err := os.Stat(name); err != nil || !st.Mode().IsRegular() {
			return "", nil, nil
		}
		fmt.Fprintf(cfg.stderr, "doctor: using the %s %s in the working directory (--%s FILE names another)\n", flag, name, flag)
		path = name
	}
	data, err = readInput(cfg, flag, path)
	return path, data, err
}

// ghEscape escapes a GitHub Actions workflow command's message or property.
func ghEscape(s string, property bool) string {
	s = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
	if property {
		s = strings.NewReplacer(":", "%3A", ",", "%2C").Replace(s)
	}
	return s
}

func doctorCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check credentials, identity, roles and trust, quota headroom, IAM auth and reachability",
		Description: "Explains failures the way an expert would: which credential source the SDK found (or the\n" +
			"usual reasons it found none), the caller identity, each role of the plan (exists, tagged,\n" +
			"trusted by the base, allowed to be assumed, within its boundary), policy headroom against\n" +
			"the account's quotas, IAM authentication on each database of the inventory, and a TCP reach\n" +
			"test of each endpoint. Exit 1 when a check fails.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "plan", EnvVars: []string{"RDSGATE_PLAN"}, Usage: "check the roles of this plan `FILE`"},
			&cli.StringFlag{Name: "inventory", EnvVars: []string{"RDSGATE_INVENTORY"}, Usage: "check the databases of this inventory `FILE`"},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "TCP reach test timeout per endpoint"},
			&cli.StringSliceFlag{Name: "chain", Usage: "check that the caller can assume this role `ARN`, then the next (at most 2)"},
			&cli.StringFlag{Name: "external-id", Usage: "external id the --chain roles require"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		}, awsFlags()...),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := oneOf("format", format, "text", "json"); err != nil {
				return err
			}
			o := bootstrap.DoctorOptions{DialTimeout: c.Duration("timeout")}
			planPath, plan, err := doctorInput(c, cfg, "plan", "plan.json")
			if err != nil {
				return err
			}
			if plan != nil {
				if o.Plan, err = policies.ReadPlan(plan, planPath); err != nil {
					return err
				}
			}
			invPath, inv, err := doctorInput(c, cfg, "inventory", "inventory.json")
			if err != nil {
				return err
			}
			if inv != nil {
				if o.Inventory, err = policies.ParseInventory(inv, invPath); err != nil {
					return err
				}
			}
			aws, err := connectAWS(c)
			if err != nil {
				return err
			}
			o.Chain, o.ExternalID = splitList(c.StringSlice("chain")), c.String("external-id")
			findings := bootstrap.Doctor(c.Context, aws, o)
			// Say what was not checked, and how to check it.
			if o.Plan == nil {
				findings = append(findings, bootstrap.Finding{Check: "roles", Status: statusSkip,
					Detail: "not checked: no plan (the roles, trust, quota headroom and account of a plan)",
					Fix:    "give --plan FILE (what rdsgate shards plan --output wrote), or run doctor where plan.json is"})
			}
			if o.Inventory == nil {
				findings = append(findings, bootstrap.Finding{Check: "databases", Status: statusSkip,
					Detail: "not checked: no inventory (IAM authentication and TCP reach of each database)",
					Fix:    "give --inventory FILE (what rdsgate discover --output wrote), or run doctor where inventory.json is"})
			}
			failed, skipped := 0, 0
			for _, f := range findings {
				switch f.Status {
				case bootstrap.StatusFail:
					failed++
				case statusSkip:
					skipped++
				}
			}
			if format == "json" {
				if err := writeJSON(cfg.stdout, findings); err != nil {
					return err
				}
			} else {
				width := 0
				for _, f := range findings {
					width = max(width, len(f.Check))
				}
				for _, f := range findings {
					label := map[string]string{bootstrap.StatusOK: "[ ok ]", bootstrap.StatusWarn: "[warn]", bootstrap.StatusFail: "[FAIL]", statusSkip: "[skip]"}[f.Status]
					fmt.Fprintf(cfg.stdout, "%s %-*s  %s\n", label, width, f.Check, f.Detail)
					if f.Fix != "" {
						fmt.Fprintf(cfg.stdout, "       %-*s  fix: %s\n", width, "", f.Fix)
					}
				}
				ran := len(findings) - skipped
				switch {
				case failed > 0:
					fmt.Fprintf(cfg.stdout, "\n%d of %s failed.\n", failed, policies.Count(ran, "check"))
				case ran == 1:
					fmt.Fprint(cfg.stdout, "\nThe one check passed.\n")
				default:
					fmt.Fprintf(cfg.stdout, "\nAll %s passed.\n", policies.Count(ran, "check"))
				}
				if skipped > 0 {
					var names []string
					for _, f := range findings {
						if f.Status == statusSkip {
							names = append(names, f.Check)
						}
					}
					fmt.Fprintf(cfg.stdout, "Not checked: %s (see [skip] above for what to give).\n", strings.Join(names, ", "))
				}
			}
			if failed > 0 {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s failed", policies.Count(failed, "check")), Silent: true}
			}
			return nil
		},
	}
}
