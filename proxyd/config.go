// Package proxyd is the rdsgate proxy: it accepts PostgreSQL and MySQL
// clients, checks who may reach which database as which database user, and
// connects to RDS and Aurora with a fresh IAM authentication token over TLS
// verified against the CA bundle the user gives. In sidecar mode it listens
// on loopback or a unix socket, one listener per database; in gateway mode
// clients authenticate with TLS client certificates and an RBAC file says
// what each identity may reach.
//
// It stands on its own: it imports nothing else from rdsgate, so it can be
// built, reviewed and deployed by itself.
package proxyd

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Protocols the proxy speaks.
const (
	ProtocolPostgres = "postgres"
	ProtocolMySQL    = "mysql"
)

// Config is the proxy's configuration file.
type Config struct {
	// Region signs tokens for databases that do not name their own.
	Region string `json:"region,omitempty"`
	// AssumeRoleARN is the role the proxy assumes from its ambient
	// credentials before anything else (optional).
	AssumeRoleARN string `json:"assume_role_arn,omitempty"`
	// ExternalID goes with AssumeRoleARN.
	ExternalID string `json:"external_id,omitempty"`
	// CABundle is the PEM file that verifies database servers (the RDS CA
	// bundle, https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
	CABundle string `json:"ca_bundle"`
	// Databases the proxy serves.
	Databases []Database `json:"databases"`
	// AWSEndpoints override the endpoints of the Redshift APIs, by service
	// ("redshift", "redshift-serverless"): VPC endpoints, emulators.
	AWSEndpoints map[string]string `json:"aws_endpoints,omitempty"`
	// Auto, when set, is automatic mode: the proxy finds databases and
	// serves them beside the ones listed here, keeping its own connect
	// shards in step (see Auto).
	Auto *Auto `json:"auto,omitempty"`
	// Gateway, when set, accepts clients that prove who they are with TLS
	// client certificates or IAM identity tokens.
	Gateway *Gateway `json:"gateway,omitempty"`
	// Replica names this proxy among several that serve as one behind a
	// load balancer, in its audit lines and logs (default: $RDSGATE_REPLICA,
	// else the host's name, which is the pod's on Kubernetes).
	Replica string `json:"replica,omitempty"`
	// AuditLog receives one JSON line per session start and end and per
	// denied attempt: a file path, or "-" for standard output.
	AuditLog string `json:"audit_log,omitempty"`
	// HealthAddress serves /startup, /readiness, /liveness and /metrics.
	HealthAddress string `json:"health_address,omitempty"`
	// MaxConnections bounds logged-in client sessions (0: 10,000).
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxPendingLogins bounds connections that have not logged in yet
	// (0: 1,000), and MaxPendingLoginsPerSource those from one address
	// (0: 100 for a gateway; for a sidecar, which serves its own
	// application's pool, the same as max_pending_logins): a flood of
	// connections that send nothing is refused at accept and never takes a
	// logged-in client's place.
	MaxPendingLogins          int `json:"max_pending_logins,omitempty"`
	MaxPendingLoginsPerSource int `json:"max_pending_logins_per_source,omitempty"`
	// ClientTLSCert and ClientTLSKey are what sidecar TCP listeners answer
	// a client's TLS request with (sslmode=require, verify-full; mysql
	// --ssl), as RDS does. Without them the proxy makes a self-signed
	// certificate at start and logs its SHA-256 fingerprint.
	ClientTLSCert string `json:"client_tls_cert,omitempty"`
	ClientTLSKey  string `json:"client_tls_key,omitempty"`
	// SocketMode is the permission of unix socket listeners (default
	// "0666": whoever can reach the directory, as loopback TCP lets every
	// local user); SocketGroup, when set, owns them (with "0660", only
	// its members connect).
	SocketMode  string `json:"socket_mode,omitempty"`
	SocketGroup string `json:"socket_group,omitempty"`
	// HandshakeTimeout bounds how long a client may take to log in: TLS,
	// the startup or handshake packets and the identity (0: 10s).
	HandshakeTimeout Duration `json:"handshake_timeout,omitempty"`
	// DialTimeout bounds connecting to a database (0: 10s).
	DialTimeout Duration `json:"dial_timeout,omitempty"`
	// DrainTimeout bounds graceful shutdown (0: 30s).
	DrainTimeout Duration `json:"drain_timeout,omitempty"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `json:"log_level,omitempty"`
	// Pprof serves Go's /debug/pprof on the health address, for profiling.
	Pprof bool `json:"pprof,omitempty"`
	// NoEventLoop relays sessions with a goroutine per direction instead of
	// the epoll loops (Linux), for comparison.
	NoEventLoop bool `json:"no_event_loop,omitempty"`
	// EventLoops is how many threads relay sessions (default: one per four
	// cores, at least one): fewer loops batch more events per wake-up.
	EventLoops int `json:"event_loops,omitempty"`
	// ReuseIdleTimeout is how long an idle reusable server connection is
	// kept (default 60s); MaxIdlePerKey bounds them per database, role and
	// startup parameters (default 10).
	ReuseIdleTimeout Duration `json:"reuse_idle_timeout,omitempty"`
	MaxIdlePerKey    int      `json:"max_idle_per_key,omitempty"`
}

// Database is one database the proxy serves.
type Database struct {
	// Name is how clients and logs refer to it.
	Name string `json:"name"`
	// Protocol is postgres or mysql.
	Protocol string `json:"protocol"`
	// Service is "" for RDS and Aurora (IAM authentication tokens),
	// "redshift" for a provisioned Redshift cluster or
	// "redshift-serverless" for a Redshift Serverless workgroup, both
	// reached with temporary database credentials from the Redshift API,
	// cached until a minute before they expire.
	Service string `json:"service,omitempty"`
	// Cluster is a Redshift cluster's identifier, Workgroup a Redshift
	// Serverless workgroup's name.
	Cluster   string `json:"cluster,omitempty"`
	Workgroup string `json:"workgroup,omitempty"`
	// IAMIdentity logs in to a Redshift cluster as the signing principal's
	// own identity (GetClusterCredentialsWithIAM: IAMR:<role>) rather than
	// as the client's database user; Redshift Serverless always does.
	IAMIdentity bool `json:"iam_identity,omitempty"`
	// Endpoint is the database's host:port (an instance, an Aurora writer or
	// reader endpoint, or an RDS Proxy endpoint).
	Endpoint string `json:"endpoint"`
	// Region of the database (default: the config's region).
	Region string `json:"region,omitempty"`
	// AssumeRoleARN is the role that holds this database's rds-db:connect
	// permission (a shard role), reached by role chaining.
	AssumeRoleARN string `json:"assume_role_arn,omitempty"`
	ExternalID    string `json:"external_id,omitempty"`
	// ViaRoleARN is a role assumed between the proxy's own principal and
	// AssumeRoleARN: another account's role, through which that account's
	// databases are reached (automatic mode's accounts). ViaExternalID goes
	// with it.
	ViaRoleARN    string `json:"via_role_arn,omitempty"`
	ViaExternalID string `json:"via_external_id,omitempty"`
	// FallbackRoleARNs may hold the database's rds-db:connect permission
	// while an apply moves it between shard roles: when the database
	// refuses the token signed through AssumeRoleARN, the proxy signs
	// through each of these in turn ("" is the proxy's own principal) and
	// keeps using the one that worked. Automatic mode sets them.
	FallbackRoleARNs []string `json:"fallback_role_arns,omitempty"`
	// DBUsers the proxy may connect as; empty allows any.
	DBUsers []string `json:"db_users,omitempty"`
	// Listen is the sidecar listener: host:port, or unix:/path for a socket.
	Listen string `json:"listen,omitempty"`
	// Address, when set, is where the proxy connects instead of Endpoint
	// (an SSH tunnel, a port forward, a VPC endpoint's own name); the token
	// and the certificate check still name Endpoint, as RDS expects.
	Address string `json:"address,omitempty"`
	// TLSServerName overrides the name checked in the server's certificate
	// (default: the endpoint's host).
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Discovered marks a database automatic mode found (it is never
	// written in a file: a reload from the file keeps what was found).
	Discovered bool `json:"discovered,omitempty"`
	// Labels are what RBAC rules may select databases by (env, team, ...).
	Labels map[string]string `json:"labels,omitempty"`
	// ReuseConnections keeps a PostgreSQL server connection after a client
	// that said Terminate while it was idle, resets it with DISCARD ALL and
	// gives it to the next client with the same startup parameters, as
	// pgbouncer's session pooling does (PostgreSQL only, Linux).
	ReuseConnections bool `json:"reuse_connections,omitempty"`
}

// Gateway accepts clients over TLS with client certificates.
type Gateway struct {
	// ListenPostgres and ListenMySQL are the gateway's listeners.
	ListenPostgres string `json:"listen_postgres,omitempty"`
	ListenMySQL    string `json:"listen_mysql,omitempty"`
	// ListenAPI serves the HTTPS API that `rdsgate db ls/connect/env` use
	// (which databases the caller may reach, how to sign for this gateway).
	ListenAPI string `json:"listen_api,omitempty"`
	TLSCert   string `json:"tls_cert"`
	TLSKey    string `json:"tls_key"`
	// ClientCA verifies client certificates (optional with IAM).
	ClientCA string `json:"client_ca,omitempty"`
	// IAM lets clients prove who they are with AWS IAM: an identity token
	// (a presigned sts:GetCallerIdentity) as the password.
	IAM *IAMAuth `json:"iam,omitempty"`
	// RBACFile maps identities to databases, database users and names.
	RBACFile string `json:"rbac_file"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration is \"30s\" or a number of seconds")
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v (use forms like 500ms, 10s, 1m)", s, err)
	}
	*d = Duration(v)
	return nil
}

// Defaults.
const (
	DefaultMaxConnections            = 10000
	DefaultMaxPendingLogins          = 1000
	DefaultMaxPendingLoginsPerSource = 100
	DefaultHandshakeTimeout          = 10 * time.Second
	DefaultDialTimeout               = 10 * time.Second
	DefaultDrainTimeout              = 30 * time.Second
)

// ErrConfig marks a configuration problem.
var ErrConfig = errors.New("invalid proxy configuration")

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(data, path)
}

// ParseConfig parses and validates configuration JSON; source names it in
// errors.
func ParseConfig(data []byte, source string) (*Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, source, err)
	}
	for _, d := range c.Databases {
		if d.Discovered {
			return nil, fmt.Errorf("%w: %s: database %s: \"discovered\" is automatic mode's mark on what it found; remove it from the file", ErrConfig, source, d.Name)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s%s: %w", source, atLine(err, data), err)
	}
	return &c, nil
}

var (
	pgSocketRe = regexp.MustCompile(`^\.s\.PGSQL\.[0-9]+$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	dbUserRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$.@-]{0,62}$`)
)

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}

	if c.DialTimeout == 0 {
		c.DialTimeout = Duration(DefaultDialTimeout)
	}
	if c.MaxPendingLogins == 0 {
		c.MaxPendingLogins = DefaultMaxPendingLogins
	}
	if c.MaxPendingLoginsPerSource == 0 {
		// A sidecar's clients are its application: a pool that opens 400
		// connections at start is one source and no flood.
		c.MaxPendingLoginsPerSource = c.MaxPendingLogins
		if c.Gateway != nil {
			c.MaxPendingLoginsPerSource = min(DefaultMaxPendingLoginsPerSource, c.MaxPendingLogins)
		}
	}
	if (c.ClientTLSCert == "") != (c.ClientTLSKey == "") {
		return bad("client_tls_cert and client_tls_key go together")
	}
	if c.SocketMode == "" {
		c.SocketMode = "0666"
	}
	if m, err := strconv.ParseUint(c.SocketMode, 8, 32); err != nil || m > 0o777 {
		return bad("socket_mode %q must be an octal permission such as 0660", c.SocketMode)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = Duration(DefaultHandshakeTimeout)
	}
	if c.MaxPendingLogins < 0 || c.MaxPendingLoginsPerSource < 0 || c.MaxConnections < 0 {
		return bad("max_connections, max_pending_logins and max_pending_logins_per_source must be positive")
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if c.ReuseIdleTimeout == 0 {
		c.ReuseIdleTimeout = Duration(60 * time.Second)
	}
	if c.MaxIdlePerKey == 0 {
		c.MaxIdlePerKey = 10
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		return bad("log_level %q must be debug, info, warn or error", c.LogLevel)
	}
	if c.CABundle == "" {
		return bad("ca_bundle is required: the PEM file that verifies database certificates (for RDS: %s; rdsgate proxy ca-bundle --output /etc/rdsgate/global-bundle.pem fetches it)", RDSCABundleURL)
	}
	if len(c.Databases) == 0 && c.Auto == nil {
		return bad("no databases: list at least one under \"databases\", or let automatic mode find them (\"auto\")")
	}
	if c.Auto != nil {
		if err := c.Auto.validate(c); err != nil {
			return err
		}
	}
	if c.ExternalID != "" && c.AssumeRoleARN == "" {
		return bad("external_id has no effect without assume_role_arn")
	}
	seen := map[string]bool{}
	listens := map[string]string{}
	for i := range c.Databases {
		d := &c.Databases[i]
		at := fmt.Sprintf("databases[%d]", i)
		if d.Name != "" {
			at += fmt.Sprintf(" (%q)", d.Name)
		}
		switch {
		case !nameRe.MatchString(d.Name):
			return bad("%s: name must be letters, digits, '.', '_' or '-'", at)
		case seen[d.Name]:
			return bad("%s: name is used twice", at)
		case d.Protocol != ProtocolPostgres && d.Protocol != ProtocolMySQL:
			return bad("%s: protocol %q must be postgres or mysql", at, d.Protocol)
		}
		seen[d.Name] = true
		host, port, err := net.SplitHostPort(d.Endpoint)
		if err != nil || host == "" {
			return bad("%s: endpoint %q must be host:port (for example orders.abc123.us-east-1.rds.amazonaws.com:5432)", at, d.Endpoint)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("%s: endpoint %q has no valid port", at, d.Endpoint)
		}
		if d.Address != "" {
			if h, p, err := net.SplitHostPort(d.Address); err != nil || h == "" || p == "" {
				return bad("%s: address %q must be host:port (where to connect instead of the endpoint)", at, d.Address)
			}
		}
		if d.Region == "" {
			d.Region = c.Region
		}
		if d.Region == "" {
			return bad("%s: no region: set region on the database or at the top of the file (tokens are signed per region)", at)
		}
		if d.ExternalID != "" && d.AssumeRoleARN == "" {
			return bad("%s: external_id has no effect without assume_role_arn", at)
		}
		if d.ViaExternalID != "" && d.ViaRoleARN == "" {
			return bad("%s: via_external_id has no effect without via_role_arn", at)
		}
		if d.ViaRoleARN != "" && !isRoleARN(d.ViaRoleARN) {
			return bad("%s: via_role_arn %q is not a role ARN", at, d.ViaRoleARN)
		}
		switch d.Service {
		case ServiceRDS:
			if d.Cluster != "" || d.Workgroup != "" || d.IAMIdentity {
				return bad("%s: cluster, workgroup and iam_identity are for Redshift: set service to redshift or redshift-serverless", at)
			}
		case ServiceRedshift, ServiceRedshiftServerless:
			if d.Protocol != ProtocolPostgres {
				return bad("%s: Redshift speaks the PostgreSQL protocol: set protocol to postgres", at)
			}
			if d.Service == ServiceRedshift && (d.Cluster == "" || d.Workgroup != "") {
				return bad("%s: a Redshift cluster needs cluster, its identifier (and no workgroup)", at)
			}
			if d.Service == ServiceRedshiftServerless && (d.Workgroup == "" || d.Cluster != "" || d.IAMIdentity) {
				return bad("%s: Redshift Serverless needs workgroup, the workgroup's name (its users are always the signing principal's identity)", at)
			}
			if d.ReuseConnections {
				return bad("%s: reuse_connections is for RDS and Aurora PostgreSQL (DISCARD ALL resets a session there)", at)
			}
		default:
			return bad("%s: service %q must be \"\" (RDS and Aurora), redshift or redshift-serverless", at, d.Service)
		}
		for _, arn := range d.FallbackRoleARNs {
			if arn != "" && !isRoleARN(arn) {
				return bad("%s: fallback_role_arns: %q is not a role ARN (arn:aws:iam::123456789012:role/NAME), nor \"\" for the proxy's own principal", at, arn)
			}
		}
		if d.ReuseConnections && d.Protocol != ProtocolPostgres {
			return bad("%s: reuse_connections is for PostgreSQL only: a MySQL client learns its thread id before the proxy knows its user", at)
		}
		for _, u := range d.DBUsers {
			if !dbUserRe.MatchString(u) {
				return bad("%s: db_users: %q is not a database user name", at, u)
			}
		}
		if d.Listen != "" {
			if other, dup := listens[d.Listen]; dup && !strings.HasSuffix(d.Listen, ":0") {
				return bad("%s: listen %s is also used by %s", at, d.Listen, other)
			}
			listens[d.Listen] = d.Name
			if path, ok := strings.CutPrefix(d.Listen, "unix:"); ok {
				if d.Protocol == ProtocolPostgres && !pgSocketRe.MatchString(filepath.Base(path)) {
					return bad("%s: listen %q: libpq and other PostgreSQL clients look for <dir>/.s.PGSQL.<port> (host=<dir> port=<port>); use unix:%s",
						at, d.Listen, SocketPath(filepath.Dir(path), ProtocolPostgres, d.Name, 5432))
				}
			} else if _, _, err := net.SplitHostPort(d.Listen); err != nil {
				return bad("%s: listen %q must be host:port or unix:/path", at, d.Listen)
			}
		}
	}
	if g := c.Gateway; g != nil {
		if g.ListenPostgres == "" && g.ListenMySQL == "" {
			return bad("gateway: set listen_postgres, listen_mysql or both")
		}
		if g.TLSCert == "" || g.TLSKey == "" || g.RBACFile == "" {
			return bad("gateway: tls_cert, tls_key and rbac_file are required")
		}
		if g.ClientCA == "" && g.IAM == nil {
			return bad("gateway: clients must prove who they are: set client_ca (certificates), iam (IAM identity tokens), or both")
		}
		if g.IAM != nil {
			if !nameRe.MatchString(g.IAM.Audience) {
				return bad("gateway.iam: audience must name this gateway (letters, digits, '.', '_', '-'), for example prod-db-gateway: clients sign for it")
			}
			if g.IAM.Region == "" && c.Region == "" {
				return bad("gateway.iam: no region for STS: set gateway.iam.region or region")
			}
		}
	} else if len(listens) == 0 && c.Auto == nil {
		return bad("nothing to listen on: give databases a listen address (sidecar) or configure a gateway")
	}
	return nil
}

// Database returns the database with the given name.
func (c *Config) Database(name string) *Database {
	for i := range c.Databases {
		if c.Databases[i].Name == name {
			return &c.Databases[i]
		}
	}
	return nil
}

// isRoleARN reports whether s looks like an IAM role ARN.
func isRoleARN(s string) bool { return strings.HasPrefix(s, "arn:") && strings.Contains(s, ":role/") }

// signers are the database as each principal that may sign its tokens
// sees it: AssumeRoleARN, then the fallbacks, without repeats.
func (d *Database) signers() []*Database {
	out := []*Database{d}
	seen := map[string]bool{d.AssumeRoleARN: true}
	for _, arn := range d.FallbackRoleARNs {
		if seen[arn] {
			continue
		}
		seen[arn] = true
		c := *d
		c.AssumeRoleARN = arn
		out = append(out, &c)
	}
	return out
}

// allowsUser reports whether the database may be reached as user.
func (d *Database) allowsUser(user string) bool {
	if len(d.DBUsers) == 0 {
		return true
	}
	for _, u := range d.DBUsers {
		if u == user || u == "*" {
			return true
		}
	}
	return false
}

func (d *Database) host() string {
	h, _, _ := net.SplitHostPort(d.Endpoint)
	return h
}

// SocketPath is where a unix socket listener for a database goes in dir:
// <dir>/.s.PGSQL.<port> for PostgreSQL, which is where libpq and pgx look
// for host=<dir> port=<port>; <dir>/<name>.sock for MySQL (mysql --socket).
func SocketPath(dir, protocol, name string, port int) string {
	if protocol == ProtocolPostgres {
		return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port))
	}
	return filepath.Join(dir, name+".sock")
}

var logLevels = map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// replica is Replica, or its default.
func (c *Config) replica() string {
	if c.Replica != "" {
		return c.Replica
	}
	if r := os.Getenv("RDSGATE_REPLICA"); r != "" {
		return r
	}
	h, _ := os.Hostname()
	return h
}

// Level is the slog level that log_level names (info when unset).
func (c *Config) Level() slog.Level { return logLevels[c.LogLevel] }
