package app

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func enableIAMAuthCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "enable-iam-auth",
		Usage: "turn on IAM database authentication on an RDS instance or Aurora cluster",
		Description: "Checks that AWS supports IAM authentication there (not Aurora Serverless v1, not MariaDB\n" +
			"before 10.6, not an Aurora member instance), then modifies the instance or cluster. Without\n" +
			"--apply-immediately RDS may wait for the next maintenance window.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "instance", Usage: "DB instance identifier"},
			&cli.StringFlag{Name: "cluster", Usage: "DB cluster identifier (Aurora, Multi-AZ DB cluster)"},
			&cli.BoolFlag{Name: "apply-immediately", Usage: "apply now instead of in the next maintenance window"},
		}, awsFlags()...),
		Action: func(c *cli.Context) error {
			instance, cluster := c.String("instance"), c.String("cluster")
			kind, id := policies.KindInstance, instance
			switch {
			case instance != "" && cluster != "":
				return usageError("cannot specify --instance and --cluster at the same time")
			case instance == "" && cluster == "":
				return usageError("name the database with --instance ID or --cluster ID")
			case cluster != "":
				kind, id = policies.KindCluster, cluster
			}
			aws, err := connectAWS(c)
			if err != nil {
				return err
			}
			api, err := aws.RDS("")
			if err != nil {
				return usageError("%v", err)
			}
			r, err := bootstrap.EnableIAMAuth(c.Context, api, kind, id, c.Bool("apply-immediately"))
			if err != nil {
				return err
			}
			out := cfg.stdout
			switch {
			case r.AlreadyEnabled:
				fmt.Fprintf(out, "IAM database authentication is already enabled on %s %s: nothing to do.\n", kind, id)
			case r.Confirmed:
				fmt.Fprintf(out, "IAM database authentication enabled on %s %s.\n", kind, id)
			default:
				what := map[policies.ResourceKind]string{policies.KindInstance: "describe-db-instances --db-instance-identifier " + id + " --query 'DBInstances[0].IAMDatabaseAuthenticationEnabled'",
					policies.KindCluster: "describe-db-clusters --db-cluster-identifier " + id + " --query 'DBClusters[0].IAMDatabaseAuthenticationEnabled'"}[kind]
				fmt.Fprintf(out, "Requested IAM database authentication on %s %s; RDS does not report it on yet.\n", kind, id)
				if !c.Bool("apply-immediately") {
					fmt.Fprintln(out, "Without --apply-immediately the change waits for the next maintenance window.")
				}
				fmt.Fprintf(out, "Check with: aws rds %s\n", what)
			}
			return nil
		},
	}
}

func discoverCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "discover",
		Usage: "list RDS instances, Aurora clusters and RDS Proxies as an inventory",
		Description: "Writes the inventory the planner reads, with labels to filter on (account-id, region,\n" +
			"engine, engine-version, endpoint-type, status, vpc-id and the tags). Databases rdsgate\n" +
			"cannot serve (IAM auth disabled, Aurora Serverless v1, MariaDB before 10.6) are listed\n" +
			"under \"skipped\" with the reason. A database's users come from its rdsgate:db-users tag\n" +
			"(comma separated), else from --db-users.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "types", Value: cli.NewStringSlice("rds", "aurora", "rds-proxy"), Usage: "what to list: rds, aurora, rds-proxy, redshift (clusters), redshift-serverless (workgroups)"},
			&cli.StringSliceFlag{Name: "regions", EnvVars: []string{"RDSGATE_REGIONS"}, Usage: "regions to list (default: --region)"},
			&cli.StringSliceFlag{Name: "tag", Usage: "only databases with this tag, as key=value or key (repeat or separate with commas: all must match)"},
			&cli.StringSliceFlag{Name: "db-users", Value: cli.NewStringSlice("*"), Usage: "users for databases without an rdsgate:db-users tag"},
			&cli.StringFlag{Name: "assume-role-arn", Usage: "list as this role (another account)"},
			&cli.StringFlag{Name: "external-id", Usage: "external id for --assume-role-arn"},
			&cli.StringFlag{Name: "format", Value: "json", Usage: "json (the inventory) or table"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write the inventory to `FILE`"},
		}, awsFlags()...),
		Action: func(c *cli.Context) error { return discover(c, cfg) },
	}
}

func discover(c *cli.Context, cfg *config) error {
	format := c.String("format")
	if err := oneOf("format", format, "json", "table"); err != nil {
		return err
	}
	if path := c.String("output"); path == "json" || path == "table" || path == "text" {
		return usageError("--output names the file to write the inventory to; for a %s on standard output use --format %s", path, strings.Replace(path, "text", "table", 1))
	}
	tags, err := tagFilters(c, "tag")
	if err != nil {
		return err
	}
	if c.String("external-id") != "" && c.String("assume-role-arn") == "" {
		return usageError("--external-id has no effect without --assume-role-arn")
	}
	if err := bootstrap.CheckDiscoverTypes(splitList(c.StringSlice("types"))); err != nil {
		return err
	}
	aws, err := connectAWS(c)
	if err != nil {
		return err
	}
	regions := splitList(c.StringSlice("regions"))
	if len(regions) == 0 && aws.Config.Region == "" {
		return usageError("%v (or --regions)", bootstrap.ErrNoRegion)
	}
	if arn := c.String("assume-role-arn"); arn != "" {
		if aws, err = aws.AssumeRole(c.Context, arn, c.String("external-id")); err != nil {
			return err
		}
	}
	account, _, err := bootstrap.CallerAccount(c.Context, aws)
	if err != nil {
		return err
	}
	inv, err := bootstrap.Discover(c.Context, aws, bootstrap.DiscoverOptions{Types: splitList(c.StringSlice("types")), Regions: regions,
		Tags: tags, DBUsers: splitList(c.StringSlice("db-users")), AccountID: account})
	if err != nil {
		return err
	}
	var buf strings.Builder
	if err := writeJSON(&buf, inv); err != nil {
		return err
	}
	if path := c.String("output"); path != "" {
		if err := writeOutput(path, []byte(buf.String())); err != nil {
			return err
		}
	}
	if format == "json" {
		_, err = io.WriteString(cfg.stdout, buf.String())
		return err
	}
	t := tabwriter.NewWriter(cfg.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "NAME\tENGINE\tKIND\tREGION\tENDPOINT\tDB USERS")
	for _, db := range inv.Databases {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s:%d\t%s\n", db.Name, db.Engine, db.Kind, db.Region, db.Endpoint, db.Port, strings.Join(db.DBUsers, ","))
	}
	t.Flush()
	fmt.Fprintf(cfg.stdout, "\n%s", policies.Count(len(inv.Databases), "database"))
	if len(inv.Skipped) > 0 {
		fmt.Fprintf(cfg.stdout, "; %d skipped:\n", len(inv.Skipped))
		for _, s := range inv.Skipped {
			fmt.Fprintf(cfg.stdout, "  %s (%s): %s\n", s.Name, s.Region, s.Reason)
		}
	} else {
		fmt.Fprintln(cfg.stdout)
	}
	return nil
}

func dbUserSQLCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "db-user-sql",
		Usage: "print the SQL that creates a database user who logs in with IAM tokens",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "engine", Usage: "postgres or mysql (RDS engine names work too)"},
			&cli.StringSliceFlag{Name: "user", Usage: "database user name (repeat for several)"},
		},
		Action: func(c *cli.Context) error {
			users := splitList(c.StringSlice("user"))
			if c.String("engine") == "" || len(users) == 0 {
				return usageError("give --engine postgres|mysql and --user NAME")
			}
			for i, u := range users {
				sql, err := policies.DBUserSQL(c.String("engine"), u)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(cfg.stdout)
				}
				fmt.Fprint(cfg.stdout, sql)
			}
			return nil
		},
	}
}

// isNoRegion reports a missing region, a usage error.
func isNoRegion(err error) bool { return errors.Is(err, bootstrap.ErrNoRegion) }

// tagFilters reads a repeatable flag of tags, key=value or key alone (any
// value). AWS tags hold no commas, so env=prod,team=x is two tags, as
// every other list flag reads a comma.
func tagFilters(c *cli.Context, flag string) (map[string]string, error) {
	tags := map[string]string{}
	for _, t := range splitList(c.StringSlice(flag)) {
		k, v, _ := strings.Cut(t, "=")
		if k == "" {
			return nil, usageError("--%s %q must be key=value or key", flag, t)
		}
		tags[k] = v
	}
	return tags, nil
}
