// Package autoproxy is automatic mode's cycle for a running proxy
// (proxyd.AutoCycle): rdsgate's discovery, planner and no-gap apply,
// working for the proxy's own principal, and the databases to serve that
// come of them.
package autoproxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/proxyconf"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// Cycle runs automatic mode's cycles with one set of AWS clients.
type Cycle struct {
	clients *bootstrap.Clients
	owner   string
}

// New connects to AWS as the proxy's principal: the configuration's
// assume_role_arn when it has one (so that every IAM write is the base
// role's, inside the boundary print-iam gives it), else the credentials
// the SDK finds. base overrides the connection (tests).
func New(ctx context.Context, pc *proxyd.Config, base bootstrap.Config) (*Cycle, error) {
	if base.Region == "" {
		base.Region = pc.Region
		if base.Region == "" && pc.Auto != nil && len(pc.Auto.Regions) > 0 {
			base.Region = pc.Auto.Regions[0]
		}
	}
	ambient, err := bootstrap.Connect(ctx, base)
	if err != nil {
		return nil, err
	}
	clients := ambient
	if pc.AssumeRoleARN != "" {
		provider := stscreds.NewAssumeRoleProvider(ambient.STS, pc.AssumeRoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "rdsgate-proxy-auto"
			if pc.ExternalID != "" {
				o.ExternalID = aws.String(pc.ExternalID)
			}
		})
		as := base
		as.Credentials = aws.NewCredentialsCache(provider)
		if clients, err = bootstrap.Connect(ctx, as); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	owner := "rdsgate-proxy@" + host
	if len(owner) > 100 {
		owner = owner[:100]
	}
	return &Cycle{clients: clients, owner: sanitizeOwner(owner)}, nil
}

// sanitizeOwner keeps IAM's tag alphabet.
func sanitizeOwner(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:/=+-@", r) {
			return r
		}
		return '-'
	}, s)
}

// Run is one cycle: discover, enable IAM authentication where told to,
// plan against what IAM holds, apply in no-gap order, and return the
// databases to serve. While the apply moves databases between principals
// the proxy serves them with both (the old first, the new as fallback),
// and after it with the new first and the old as fallback, until the next
// cycle: IAM may take seconds to show a write everywhere.
func (c *Cycle) Run(ctx context.Context, current *proxyd.Config, serve func([]proxyd.Database) error) ([]proxyd.Database, proxyd.AutoReport, error) {
	a := current.Auto
	var rep proxyd.AutoReport
	base, err := policies.ParseIAMARN(a.BaseRole)
	if err != nil || base.Type != string(policies.PrincipalRole) {
		return nil, rep, fmt.Errorf("auto.base_role %q is not a role ARN", a.BaseRole)
	}
	regions := a.Regions
	if len(regions) == 0 {
		regions = []string{current.Region}
	}
	inv, err := bootstrap.Discover(ctx, c.clients, bootstrap.DiscoverOptions{Types: a.Types, Regions: regions, Tags: a.Tags, DBUsers: a.DBUsers, AccountID: base.AccountID})
	if err != nil {
		return nil, rep, fmt.Errorf("discovering databases: %w", err)
	}
	rep.Discovered = len(inv.Databases)
	for _, sk := range inv.Skipped {
		if sk.IAMAuthDisabled && a.EnableIAMAuth {
			if err := c.enableIAMAuth(ctx, sk); err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("could not enable IAM authentication on %s: %v", sk.Name, err))
			} else {
				// Served from the cycle after RDS has applied it.
				rep.Enabled = append(rep.Enabled, sk.Name)
			}
			continue
		}
		rep.Skipped = append(rep.Skipped, sk.Name+": "+sk.Reason)
	}
	shards := a.MaxShardRoles
	switch shards {
	case 0:
		shards = policies.DefaultMaxShardRoles
	case -1:
		shards = 0
	}
	in := policies.PlanInput{Inventory: inv, Quotas: policies.DefaultQuotas(), Target: policies.Target{Kind: policies.PrincipalRole, Name: base.Name,
		Path: base.Path, AccountID: base.AccountID, MaxShardRoles: shards, ExternalID: a.ExternalID}}
	plan, _, err := bootstrap.PlanAgainstAWS(ctx, c.clients, in, bootstrap.PlanOptions{Reserve: true, Quotas: true})
	if err != nil {
		return nil, rep, fmt.Errorf("planning the connect shards of %s: %w", base.Name, err)
	}
	want, err := c.databases(plan, inv, current)
	if err != nil {
		return nil, rep, err
	}
	old := map[string]proxyd.Database{}
	for _, d := range current.Databases {
		if d.Discovered {
			old[d.Name] = d
		}
	}
	// While the apply runs: every database served now stays, signed
	// through the principal that holds it now, then the one the plan
	// moves it to, then the base role (temporary documents).
	var during []proxyd.Database
	moves := 0
	for _, d := range old {
		for _, w := range want {
			if w.Name == d.Name && w.AssumeRoleARN != d.AssumeRoleARN {
				d.FallbackRoleARNs = []string{w.AssumeRoleARN, ""}
				d.ExternalID = w.ExternalID
				moves++
			}
		}
		during = append(during, d)
	}
	if moves > 0 {
		if err := serve(during); err != nil {
			return nil, rep, fmt.Errorf("serving the databases that move with their new principals before the apply: %w", err)
		}
	}
	report, err := bootstrap.ApplyPlan(ctx, c.clients, plan, bootstrap.ApplyOptions{Lease: bootstrap.LeaseOptions{Owner: c.owner,
		Wait: min(time.Duration(a.Interval), 2*time.Minute)}})
	if report != nil {
		rep.Steps, rep.Writes = len(report.Steps), report.Writes
	}
	if err != nil {
		return nil, rep, fmt.Errorf("applying the connect shards of %s (%d of %d steps done; the next cycle converges): %w", base.Name, report.Done, len(report.Steps), err)
	}
	for _, h := range report.BrokenChains() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s cannot assume %s: %s", h.From, h.To, strings.Join(h.Problems, "; ")))
	}
	// After it: the new principal first, the old one as a fallback until
	// the next cycle.
	for i := range want {
		if d, ok := old[want[i].Name]; ok && d.AssumeRoleARN != want[i].AssumeRoleARN {
			want[i].FallbackRoleARNs = []string{d.AssumeRoleARN, ""}
		}
	}
	return want, rep, nil
}

// databases makes the listeners of the planned databases: ports kept from
// the configuration in force, new ones the lowest free from first_port
// that no database of the file holds.
func (c *Cycle) databases(plan *policies.Plan, inv *policies.Inventory, current *proxyd.Config) ([]proxyd.Database, error) {
	a := current.Auto
	var keep []policies.Database
	taken := map[int]string{}
	for _, d := range current.Databases {
		if d.Discovered {
			continue
		}
		if port := proxyconf.ListenPort(d.Listen); port != 0 {
			taken[port] = d.Name
		}
	}
	for _, d := range inv.Databases {
		if current.Database(d.Name) == nil || current.Database(d.Name).Discovered {
			keep = append(keep, d)
		}
	}
	if len(keep) == 0 {
		return nil, nil
	}
	served := &policies.Inventory{Databases: keep}
	planned := *plan
	planned.Databases = slices.DeleteFunc(slices.Clone(plan.Databases), func(d policies.PlanDatabase) bool {
		return !slices.ContainsFunc(keep, func(k policies.Database) bool { return k.Name == d.Name })
	})
	var cfg *proxyd.Config
	for {
		var err error
		cfg, err = proxyconf.FromPlan(&planned, served, proxyconf.Options{CABundle: current.CABundle, Region: current.Region, ListenHost: a.ListenHost,
			FirstPort: a.FirstPort, Previous: current, Addresses: a.Addresses, AssumeRoleARN: current.AssumeRoleARN, Taken: taken})
		if err != nil {
			return nil, fmt.Errorf("placing the listeners of discovered databases: %w", err)
		}
		// A new database's port is nobody's yet: when another process
		// holds it, the next free one will do.
		busy := false
		for _, d := range cfg.Databases {
			if current.Database(d.Name) != nil || current.Gateway != nil || strings.HasPrefix(d.Listen, "unix:") {
				continue
			}
			ln, err := net.Listen("tcp", d.Listen)
			if err != nil {
				taken[proxyconf.ListenPort(d.Listen)] = "another process"
				busy = true
				continue
			}
			ln.Close()
		}
		if !busy {
			break
		}
	}
	if current.Gateway != nil {
		// A gateway serves them on its own listeners, under its RBAC.
		for i := range cfg.Databases {
			cfg.Databases[i].Listen = ""
		}
	}
	return cfg.Databases, nil
}

// enableIAMAuth turns IAM authentication on, applied at once.
func (c *Cycle) enableIAMAuth(ctx context.Context, sk policies.SkippedDatabase) error {
	api, err := c.clients.RDS(sk.Region)
	if err != nil {
		return err
	}
	_, err = bootstrap.EnableIAMAuth(ctx, api, sk.Kind, sk.Name, true)
	return err
}
