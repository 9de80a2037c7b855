// Package autoproxy is automatic mode's cycle for a running proxy
// (proxyd.AutoCycle): rdsgate's discovery, planner and no-gap apply,
// working for the proxy's own principal, and the databases to serve that
// come of them.
package autoproxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	config  bootstrap.Config // what clients were made with, for other accounts'
	owner   string
	// viaClients act as other accounts' roles, by role and external id.
	viaClients map[string]*bootstrap.Clients
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
	return &Cycle{clients: clients, config: base, owner: sanitizeOwner(owner), viaClients: map[string]*bootstrap.Clients{}}, nil
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

// account is one account a cycle serves: its base role (whose connect
// shards it manages), the clients that act as that role, and the role the
// proxy's own principal goes through to reach it ("" for its own account).
type account struct {
	base    policies.IAMName
	baseARN string
	via     string
	viaExt  string
	clients *bootstrap.Clients
	// A cycle's work on it.
	inv  *policies.Inventory
	plan *policies.Plan
	want []proxyd.Database
	err  error
}

func (a *account) String() string {
	if a.via == "" {
		return "account " + a.base.AccountID
	}
	return "account " + a.base.AccountID + " (" + a.via + ")"
}

// accounts are the accounts of the settings: the proxy's own, or the
// listed ones through their roles.
func (c *Cycle) accounts(ctx context.Context, a *proxyd.Auto) ([]*account, error) {
	if len(a.Accounts) == 0 {
		base, err := policies.ParseIAMARN(a.BaseRole)
		if err != nil || base.Type != string(policies.PrincipalRole) {
			return nil, fmt.Errorf("auto.base_role %q is not a role ARN", a.BaseRole)
		}
		return []*account{{base: base, baseARN: a.BaseRole, clients: c.clients}}, nil
	}
	var out []*account
	for _, acct := range a.Accounts {
		base, err := policies.ParseIAMARN(acct.AssumeRoleARN)
		if err != nil || base.Type != string(policies.PrincipalRole) {
			return nil, fmt.Errorf("auto.accounts: %q is not a role ARN", acct.AssumeRoleARN)
		}
		key := acct.AssumeRoleARN + "#" + acct.ExternalID
		clients, ok := c.viaClients[key]
		if !ok {
			provider := stscreds.NewAssumeRoleProvider(c.clients.STS, acct.AssumeRoleARN, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = "rdsgate-proxy-auto"
				if acct.ExternalID != "" {
					o.ExternalID = aws.String(acct.ExternalID)
				}
			})
			cfg := c.config
			cfg.Credentials = aws.NewCredentialsCache(provider)
			if clients, err = bootstrap.Connect(ctx, cfg); err != nil {
				return nil, err
			}
			c.viaClients[key] = clients
		}
		out = append(out, &account{base: base, baseARN: acct.AssumeRoleARN, via: acct.AssumeRoleARN, viaExt: acct.ExternalID, clients: clients})
	}
	return out, nil
}

// Run is one cycle over each account: discover, enable IAM authentication
// where told to, plan against what IAM holds, apply in no-gap order, and
// return the databases to serve. While the applies move databases between
// principals the proxy serves them with both (the old first, the new as a
// fallback), and after them with the new first and the old as a fallback,
// until the next cycle: IAM may take seconds to show a write everywhere.
// An account that fails keeps what it had; the others go on.
func (c *Cycle) Run(ctx context.Context, current *proxyd.Config, serve func([]proxyd.Database) error) ([]proxyd.Database, proxyd.AutoReport, error) {
	a := current.Auto
	var rep proxyd.AutoReport
	accts, err := c.accounts(ctx, a)
	if err != nil {
		return nil, rep, err
	}
	regions := a.Regions
	if len(regions) == 0 {
		regions = []string{current.Region}
	}
	for _, acct := range accts {
		acct.inv, acct.err = bootstrap.Discover(ctx, acct.clients, bootstrap.DiscoverOptions{Types: a.Types, Regions: regions, Tags: a.Tags,
			DBUsers: a.DBUsers, AccountID: acct.base.AccountID})
		if acct.err != nil {
			acct.err = fmt.Errorf("%s: discovering databases: %w", acct, acct.err)
			continue
		}
		rep.Discovered += len(acct.inv.Databases)
		for _, sk := range acct.inv.Skipped {
			if sk.IAMAuthDisabled && a.EnableIAMAuth {
				if err := enableIAMAuth(ctx, acct.clients, sk); err != nil {
					rep.Notes = append(rep.Notes, fmt.Sprintf("could not enable IAM authentication on %s: %v", sk.Name, err))
				} else {
					// Served from the cycle after RDS has applied it.
					rep.Enabled = append(rep.Enabled, sk.Name)
				}
				continue
			}
			rep.Skipped = append(rep.Skipped, sk.Name+": "+sk.Reason)
		}
	}
	// The same name in several accounts gets the account.
	var invs []*policies.Inventory
	for _, acct := range accts {
		if acct.inv != nil {
			invs = append(invs, acct.inv)
		}
	}
	policies.DisambiguateNames(invs, func(d policies.Database) string { return d.AccountID })
	shards := a.MaxShardRoles
	switch shards {
	case 0:
		shards = policies.DefaultMaxShardRoles
	case -1:
		shards = 0
	}
	taken := map[int]string{}
	for _, d := range current.Databases {
		if !d.Discovered {
			if port := proxyconf.ListenPort(d.Listen); port != 0 {
				taken[port] = d.Name
			}
		}
	}
	for _, acct := range accts {
		if acct.err != nil {
			continue
		}
		in := policies.PlanInput{Inventory: acct.inv, Quotas: policies.DefaultQuotas(), Target: policies.Target{Kind: policies.PrincipalRole, Name: acct.base.Name,
			Path: acct.base.Path, AccountID: acct.base.AccountID, MaxShardRoles: shards, ExternalID: a.ExternalID}}
		if acct.plan, _, acct.err = bootstrap.PlanAgainstAWS(ctx, acct.clients, in, bootstrap.PlanOptions{Reserve: true, Quotas: true}); acct.err != nil {
			acct.err = fmt.Errorf("%s: planning the connect shards of %s: %w", acct, acct.base.Name, acct.err)
			continue
		}
		if acct.want, acct.err = c.databases(acct.plan, acct.inv, current, taken); acct.err != nil {
			continue
		}
		for i := range acct.want {
			acct.want[i].ViaRoleARN, acct.want[i].ViaExternalID = acct.via, acct.viaExt
			if port := proxyconf.ListenPort(acct.want[i].Listen); port != 0 {
				taken[port] = acct.want[i].Name
			}
		}
	}
	old := map[string]proxyd.Database{}
	for _, d := range current.Databases {
		if d.Discovered {
			old[d.Name] = d
		}
	}
	wanted := map[string]proxyd.Database{}
	for _, acct := range accts {
		for _, w := range acct.want {
			wanted[w.Name] = w
		}
	}
	// While the applies run: every database served now stays, signed
	// through the principal that holds it now, then the one the plan
	// moves it to, then its account's base role (temporary documents).
	var during []proxyd.Database
	moves := 0
	for _, d := range old {
		if w, ok := wanted[d.Name]; ok && w.AssumeRoleARN != d.AssumeRoleARN && w.ViaRoleARN == d.ViaRoleARN {
			d.FallbackRoleARNs = []string{w.AssumeRoleARN, ""}
			d.ExternalID = w.ExternalID
			moves++
		}
		during = append(during, d)
	}
	if moves > 0 {
		if err := serve(during); err != nil {
			return nil, rep, fmt.Errorf("serving the databases that move with their new principals before the apply: %w", err)
		}
	}
	var errs []error
	var out []proxyd.Database
	for _, acct := range accts {
		if acct.err == nil {
			report, err := bootstrap.ApplyPlan(ctx, acct.clients, acct.plan, bootstrap.ApplyOptions{Lease: bootstrap.LeaseOptions{Owner: c.owner,
				Wait: min(time.Duration(a.Interval), 2*time.Minute)}})
			rep.Steps, rep.Writes = rep.Steps+len(report.Steps), rep.Writes+report.Writes // ApplyPlan always reports
			if err != nil {
				acct.err = fmt.Errorf("%s: applying the connect shards of %s (%d of %d steps done; the next cycle converges): %w",
					acct, acct.base.Name, report.Done, len(report.Steps), err)
			} else {
				for _, h := range report.BrokenChains() {
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s cannot assume %s: %s", h.From, h.To, strings.Join(h.Problems, "; ")))
				}
			}
		}
		if acct.err != nil {
			// What this account served stays as it was during the apply.
			errs = append(errs, acct.err)
			for _, d := range during {
				if d.ViaRoleARN == acct.via {
					out = append(out, d)
				}
			}
			continue
		}
		// After the apply: the new principal first, the old one as a
		// fallback until the next cycle.
		for _, w := range acct.want {
			if d, ok := old[w.Name]; ok && d.AssumeRoleARN != w.AssumeRoleARN && d.ViaRoleARN == w.ViaRoleARN {
				w.FallbackRoleARNs = []string{d.AssumeRoleARN, ""}
			}
			out = append(out, w)
		}
	}
	if len(errs) == len(accts) {
		return nil, rep, errors.Join(errs...)
	}
	return out, rep, errors.Join(errs...)
}

// databases makes the listeners of the planned databases: ports kept from
// the configuration in force, new ones the lowest free from first_port
// that no database of the file holds.
func (c *Cycle) databases(plan *policies.Plan, inv *policies.Inventory, current *proxyd.Config, held map[int]string) ([]proxyd.Database, error) {
	a := current.Auto
	var keep []policies.Database
	taken := maps.Clone(held)
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
func enableIAMAuth(ctx context.Context, clients *bootstrap.Clients, sk policies.SkippedDatabase) error {
	api, err := clients.RDS(sk.Region)
	if err != nil {
		return err
	}
	_, err = bootstrap.EnableIAMAuth(ctx, api, sk.Kind, sk.Name, true)
	return err
}
