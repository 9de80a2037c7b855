package proxyd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Auto is automatic mode: on an interval the proxy discovers the databases
// its settings select, enables IAM authentication where told to, keeps its
// own principal's rds-db:connect shards in step with them (written in the
// order that never leaves a gap) and serves them, opening and closing
// listeners without a restart. The work is done by the AutoCycle given to
// New (rdsgate proxy start gives rdsgate's own); proxyd runs it, keeps
// serving what it had when a cycle fails, and reports every cycle on
// /automatic and /metrics.
type Auto struct {
	// Interval between cycles (default 5m, at least 10s). The first runs
	// at start.
	Interval Duration `json:"interval,omitempty"`
	// Regions to discover in (default: the configuration's region).
	Regions []string `json:"regions,omitempty"`
	// Types to discover: rds (instances), aurora (clusters), rds-proxy,
	// redshift (clusters), redshift-serverless (workgroups); default the
	// first three.
	Types []string `json:"types,omitempty"`
	// Tags a database must carry, all of them: a value, or "" for any.
	Tags map[string]string `json:"tags,omitempty"`
	// DBUsers of databases without an rdsgate:db-users tag (default any).
	DBUsers []string `json:"db_users,omitempty"`
	// EnableIAMAuth turns IAM authentication on for discovered databases
	// that have it off (opt-in: it modifies the database, applied at once).
	EnableIAMAuth bool `json:"enable_iam_auth,omitempty"`
	// BaseRole is the proxy's own role, as an ARN: the principal whose
	// connect shards it manages (default: assume_role_arn).
	BaseRole string `json:"base_role,omitempty"`
	// ExternalID the shard roles' trust policies require.
	ExternalID string `json:"external_id,omitempty"`
	// MaxShardRoles the plan may create (default the planner's, 1,000,
	// as IAM's roles per account; -1 keeps every permission on the base
	// role).
	MaxShardRoles int `json:"max_shard_roles,omitempty"`
	// Accounts, when set, are where to discover instead of the proxy's own
	// account: for each, the proxy assumes the role (from its own
	// principal) and manages that role's connect shards in that account;
	// its databases are reached through the role (via_role_arn). A role of
	// the proxy's own account may be listed too.
	Accounts []AutoAccount `json:"accounts,omitempty"`
	// ListenHost and FirstPort place the listeners of discovered
	// databases: host:port from FirstPort (default 127.0.0.1 and 15432), or
	// sockets with "unix:/dir". A database keeps its port for as long as it
	// is served.
	ListenHost string `json:"listen_host,omitempty"`
	FirstPort  int    `json:"first_port,omitempty"`
	// Addresses are where to connect instead of a discovered database's
	// endpoint, by name (a tunnel, a port forward).
	Addresses map[string]string `json:"addresses,omitempty"`
}

// AutoAccount is an account automatic mode serves, through a role there.
type AutoAccount struct {
	AssumeRoleARN string `json:"assume_role_arn"`
	ExternalID    string `json:"external_id,omitempty"`
}

// Automatic mode's defaults.
const (
	DefaultAutoInterval = 5 * time.Minute
	MinAutoInterval     = 10 * time.Second
)

func (a *Auto) validate(c *Config) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: auto: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if a.Interval == 0 {
		a.Interval = Duration(DefaultAutoInterval)
	}
	if time.Duration(a.Interval) < MinAutoInterval {
		return bad("interval %s is shorter than %s: every cycle reads IAM and RDS, and AWS throttles", time.Duration(a.Interval), MinAutoInterval)
	}
	if len(a.Accounts) > 0 && a.BaseRole != "" {
		return bad("base_role and accounts: with accounts, each account's role is the base of its own shards; list the proxy's own account among them")
	}
	if len(a.Accounts) == 0 && a.BaseRole == "" {
		a.BaseRole = c.AssumeRoleARN
	}
	if len(a.Accounts) == 0 && !isRoleARN(a.BaseRole) {
		return bad("base_role %q must be the proxy's role ARN (arn:aws:iam::123456789012:role/rdsgate-proxy), whose connect shards automatic mode manages; or set assume_role_arn", a.BaseRole)
	}
	for _, t := range a.Types {
		if t != "rds" && t != "aurora" && t != "rds-proxy" && t != ServiceRedshift && t != ServiceRedshiftServerless {
			return bad("types: %q is not rds, aurora, rds-proxy, redshift or redshift-serverless", t)
		}
	}
	if len(a.Regions) == 0 && c.Region == "" {
		return bad("no regions: set auto.regions or region")
	}
	seen := map[string]bool{}
	for i, acct := range a.Accounts {
		if !isRoleARN(acct.AssumeRoleARN) {
			return bad("accounts[%d].assume_role_arn %q must be a role ARN in that account (arn:aws:iam::210987654321:role/rdsgate-proxy)", i, acct.AssumeRoleARN)
		}
		if seen[acct.AssumeRoleARN] {
			return bad("accounts[%d]: %s is listed twice", i, acct.AssumeRoleARN)
		}
		seen[acct.AssumeRoleARN] = true
	}
	if a.MaxShardRoles < -1 {
		return bad("max_shard_roles %d: give a count, or -1 for none", a.MaxShardRoles)
	}
	if a.FirstPort < 0 || a.FirstPort > 65535 {
		return bad("first_port %d is not a port", a.FirstPort)
	}
	return nil
}

// AutoCycle is one cycle of automatic mode. It receives the configuration
// in force and returns the databases to serve as found (the file's own are
// kept beside them), with what it found and did. Before it takes anything
// away in IAM it may call serve with databases to serve at once (those that
// move signed through their new principal, the old one as a fallback). An
// error with no databases keeps the proxy serving what it has; an error
// with databases (one account failed, the others did not) serves them and
// still counts the cycle as failed.
type AutoCycle func(ctx context.Context, current *Config, serve func([]Database) error) ([]Database, AutoReport, error)

// AutoReport is what a cycle found and did.
type AutoReport struct {
	Discovered int      `json:"discovered"`
	Skipped    []string `json:"skipped,omitempty"` // name: reason
	Enabled    []string `json:"iam_auth_enabled,omitempty"`
	Steps      int      `json:"iam_steps"`
	Writes     int      `json:"iam_writes"`
	Notes      []string `json:"notes,omitempty"`
}

// AutoStatus is the last cycles' outcome, as /automatic shows it.
type AutoStatus struct {
	Cycles      int        `json:"cycles"`
	Failures    int        `json:"failures"`
	LastStart   time.Time  `json:"last_start,omitzero"`
	LastEnd     time.Time  `json:"last_end,omitzero"`
	LastSuccess time.Time  `json:"last_success,omitzero"`
	AgeSeconds  float64    `json:"age_seconds"`
	Databases   int        `json:"databases"`
	Changes     []string   `json:"changes,omitempty"`
	Error       string     `json:"error,omitempty"`
	Report      AutoReport `json:"report"`
	Interval    string     `json:"interval"`
}

// WithAutomatic gives the server the cycle of automatic mode, run when the
// configuration has auto settings.
func WithAutomatic(cycle AutoCycle) Option { return func(s *Server) { s.autoCycle = cycle } }

type autoState struct {
	mu      sync.Mutex
	status  AutoStatus
	stop    context.CancelFunc
	done    chan struct{}
	trigger chan struct{}

	cycles      *prometheus.CounterVec
	lastEnd     prometheus.Gauge
	lastSuccess prometheus.Gauge
	databases   prometheus.Gauge
	writes      prometheus.Counter
	enabled     prometheus.Counter
}

func newAutoState(reg *prometheus.Registry) *autoState {
	a := &autoState{
		trigger: make(chan struct{}, 1),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_auto_cycles_total",
			Help: "Automatic mode's cycles, by result: ok or error (an error keeps the proxy serving what it had)."}, []string{"result"}),
		lastEnd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdsgate_auto_last_cycle_timestamp_seconds",
			Help: "When automatic mode's last cycle ended (Unix time)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdsgate_auto_last_success_timestamp_seconds",
			Help: "When automatic mode's last successful cycle ended (Unix time): alert on its age."}),
		databases: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdsgate_auto_databases",
			Help: "Databases automatic mode serves after its last successful cycle."}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "rdsgate_auto_iam_writes_total",
			Help: "IAM writes automatic mode made to keep its connect shards in step."}),
		enabled: prometheus.NewCounter(prometheus.CounterOpts{Name: "rdsgate_auto_iam_auth_enabled_total",
			Help: "Databases automatic mode turned IAM authentication on for (enable_iam_auth)."}),
	}
	reg.MustRegister(a.cycles, a.lastEnd, a.lastSuccess, a.databases, a.writes, a.enabled)
	return a
}

// startAuto runs the cycles until Shutdown.
func (s *Server) startAuto() {
	cfg := s.config()
	if cfg.Auto == nil || s.autoCycle == nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	a := s.auto
	a.stop, a.done = stop, make(chan struct{})
	go func() {
		defer close(a.done)
		for {
			s.autoOnce(ctx)
			timer := time.NewTimer(time.Duration(s.config().Auto.Interval))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-a.trigger:
				timer.Stop()
			case <-timer.C:
			}
		}
	}()
}

// RunAutoCycle asks for a cycle now (tests, and an operator's SIGUSR1).
func (s *Server) RunAutoCycle() {
	select {
	case s.auto.trigger <- struct{}{}:
	default:
	}
}

// AutoStatus returns the outcome of automatic mode's cycles so far.
func (s *Server) AutoStatus() AutoStatus {
	a := s.auto
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	st.Changes = append([]string(nil), st.Changes...)
	if cfg := s.config().Auto; cfg != nil {
		st.Interval = time.Duration(cfg.Interval).String()
	}
	if !st.LastSuccess.IsZero() {
		st.AgeSeconds = time.Since(st.LastSuccess).Seconds()
	}
	return st
}

func (s *Server) autoOnce(ctx context.Context) {
	a := s.auto
	start := time.Now()
	a.mu.Lock()
	a.status.LastStart = start
	a.mu.Unlock()
	current := s.config()
	var changes []string
	serve := func(dbs []Database) error {
		c, err := s.serveDiscovered(dbs)
		changes = append(changes, c...)
		return err
	}
	next, report, err := s.autoCycle(ctx, current, serve)
	if err == nil || next != nil {
		if serr := serve(next); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Cycles++
	a.status.LastEnd = time.Now()
	a.status.Report = report
	slices.Sort(changes)
	a.status.Changes = slices.Compact(changes)
	a.lastEnd.Set(float64(a.status.LastEnd.UnixNano()) / 1e9)
	a.writes.Add(float64(report.Writes))
	a.enabled.Add(float64(len(report.Enabled)))
	if err != nil {
		a.status.Failures++
		a.status.Error = err.Error()
		a.cycles.WithLabelValues("error").Inc()
		s.log.Error("automatic mode: the cycle failed; serving what the proxy had", "error", err.Error(), "took", time.Since(start).Round(time.Millisecond).String())
		return
	}
	a.status.Error = ""
	a.status.LastSuccess = a.status.LastEnd
	a.status.Databases = len(s.config().Databases)
	a.cycles.WithLabelValues("ok").Inc()
	a.lastSuccess.Set(float64(a.status.LastEnd.UnixNano()) / 1e9)
	a.databases.Set(float64(a.status.Databases))
	s.log.Info("automatic mode: cycle done", "databases", a.status.Databases, "discovered", report.Discovered, "skipped", len(report.Skipped),
		"iam_auth_enabled", strings.Join(report.Enabled, ","), "iam_steps", report.Steps, "iam_writes", report.Writes, "changes", strings.Join(a.status.Changes, "; "),
		"took", time.Since(start).Round(time.Millisecond).String())
}

// stopAuto ends the cycles and waits for one that runs.
func (s *Server) stopAuto() {
	if a := s.auto; a.stop != nil {
		a.stop()
		<-a.done
	}
}

// autoHandler serves /automatic: the last cycles as JSON; 503 when
// automatic mode is off.
func (s *Server) autoHandler(w http.ResponseWriter, _ *http.Request) {
	if s.config().Auto == nil {
		http.Error(w, "automatic mode is off (no auto in the configuration)", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.AutoStatus())
}
