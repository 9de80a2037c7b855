package proxyd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rdsgate/rdsgate/internal/wildcard"
)

// RBAC says which identities may reach which databases, as which database
// users, on which database names. Access is denied unless a rule allows it,
// and an explicit deny wins over any allow.
type RBAC struct {
	Rules []Rule `json:"rules"`

	once     sync.Once
	err      error
	warnings []string
}

// Rule is one entry of the RBAC file. Every list matches with * and ?
// wildcards; an empty list matches nothing, ["*"] everything.
type Rule struct {
	Name string `json:"name"`
	// Effect is allow (the default) or deny.
	Effect string `json:"effect,omitempty"`
	// Identities are certificate subjects ("CN=alice", "CN=*,O=dba": each
	// attribute named must be in the subject, with a matching value), IAM
	// ARNs (arn:aws:iam::123456789012:role/app-*; roles and users are
	// matched by account and name, as STS reports no path), or "*".
	Identities []string `json:"identities"`
	// Databases by name; Labels narrow them further (all must match).
	Databases []string          `json:"databases"`
	Labels    map[string]string `json:"labels,omitempty"`
	DBUsers   []string          `json:"db_users"`
	DBNames   []string          `json:"db_names"`

	ids []identityPattern
}

// AccessRequest is what a client asks for.
type AccessRequest struct {
	Identity Identity
	Database *Database
	DBUser   string
	DBName   string
}

// Decision explains an access check.
type Decision struct {
	Allowed bool
	Rule    string // the rule that decided, "" when none matched
	Reason  string
}

// LoadRBAC reads and checks an RBAC file.
func LoadRBAC(path string) (*RBAC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: rbac_file: %v", ErrConfig, err)
	}
	r := &RBAC{}
	if err := decodeStrict(data, r); err != nil {
		return nil, fmt.Errorf("%w: rbac_file %s: %v", ErrConfig, path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s%s)", err, path, atLine(err, data))
	}
	return r, nil
}

// Validate checks and compiles the rules, once; Check refuses everything
// when they are not valid.
func (r *RBAC) Validate() error {
	r.once.Do(func() { r.err = r.validate() })
	return r.err
}

// Warnings are what Validate found that the rules mean less than they
// seem to say.
func (r *RBAC) Warnings() []string {
	_ = r.Validate()
	return r.warnings
}

func (r *RBAC) validate() error {
	names := map[string]bool{}
	for i := range r.Rules {
		rule := &r.Rules[i]
		at := fmt.Sprintf("rules[%d]", i)
		switch {
		case rule.Name == "":
			return fmt.Errorf("%w: rbac %s: name is required (it is how denials say what to change)", ErrConfig, at)
		case names[rule.Name]:
			return fmt.Errorf("%w: rbac %s: name %q is used twice", ErrConfig, at, rule.Name)
		case rule.Effect != "" && rule.Effect != "allow" && rule.Effect != "deny":
			return fmt.Errorf("%w: rbac %s (%s): effect must be allow or deny", ErrConfig, at, rule.Name)
		case len(rule.Identities) == 0:
			return fmt.Errorf("%w: rbac %s (%s): identities is empty, so the rule matches no one", ErrConfig, at, rule.Name)
		case len(rule.Databases) == 0 && len(rule.Labels) == 0:
			return fmt.Errorf("%w: rbac %s (%s): give databases or labels", ErrConfig, at, rule.Name)
		}
		if rule.Effect != "deny" && (len(rule.DBUsers) == 0 || len(rule.DBNames) == 0) {
			return fmt.Errorf("%w: rbac %s (%s): an allow rule needs db_users and db_names (use [\"*\"] for any)", ErrConfig, at, rule.Name)
		}
		names[rule.Name] = true
		rule.ids = rule.ids[:0]
		for _, p := range rule.Identities {
			ip, warn, err := compileIdentity(p)
			if err != nil {
				return fmt.Errorf("%w: rbac %s (%s): identities: %v", ErrConfig, at, rule.Name, err)
			}
			if warn != "" {
				r.warnings = append(r.warnings, fmt.Sprintf("rbac rule %q: %s", rule.Name, warn))
			}
			rule.ids = append(rule.ids, ip)
		}
	}
	return nil
}

// Review lists what the rules cannot enforce on the databases of cfg: a
// MySQL session can name any database inside SQL, so db_names there are
// checked at login and on USE, and only the database's grants keep the
// rest out.
func (r *RBAC) Review(cfg *Config) []string {
	out := append([]string(nil), r.Warnings()...)
	for i := range r.Rules {
		rule := &r.Rules[i]
		if rule.Effect == "deny" || matchAny(rule.DBNames, "*") {
			continue
		}
		for j := range cfg.Databases {
			db := &cfg.Databases[j]
			if db.Protocol == ProtocolMySQL && rule.matchesDatabase(db) {
				out = append(out, fmt.Sprintf("rbac rule %q limits db_names on MySQL database %s to %v: the gateway checks the database named at login, "+
					"in COM_INIT_DB and in USE, but SQL can still name another one (SELECT ... FROM other.t); grant the db users %v only what they may use "+
					"(GRANT ... ON name.* TO ...)", rule.Name, db.Name, rule.DBNames, rule.DBUsers))
				break
			}
		}
	}
	return out
}

func matchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if wildcard.Match(p, value) {
			return true
		}
	}
	return false
}

func (rule *Rule) matchesIdentity(id Identity) bool {
	for i := range rule.ids {
		if rule.ids[i].matches(id) {
			return true
		}
	}
	return false
}

func (rule *Rule) matchesDatabase(db *Database) bool {
	if len(rule.Databases) > 0 && !matchAny(rule.Databases, db.Name) {
		return false
	}
	for k, v := range rule.Labels {
		if !wildcard.Match(v, db.Labels[k]) {
			return false
		}
	}
	return true
}

func (rule *Rule) matches(req AccessRequest, checkUserAndName bool) bool {
	if !rule.matchesIdentity(req.Identity) || !rule.matchesDatabase(req.Database) {
		return false
	}
	if !checkUserAndName {
		return true
	}
	users, names := rule.DBUsers, rule.DBNames
	if rule.Effect == "deny" {
		// An empty list on a deny rule means "any".
		if len(users) == 0 {
			users = []string{"*"}
		}
		if len(names) == 0 {
			names = []string{"*"}
		}
	}
	return matchAny(users, req.DBUser) && matchAny(names, req.DBName)
}

// Check decides a request and says which rule decided it: the gateway at
// login and on every change of database, `rdsgate access check` and
// `rdsgate db ls` all come here. The database's own db_users (from the
// proxy's configuration) must allow the user too.
func (r *RBAC) Check(req AccessRequest) Decision {
	if err := r.Validate(); err != nil {
		return Decision{Reason: "the RBAC rules are not valid, so nothing is allowed: " + err.Error()}
	}
	if req.Identity.IsZero() {
		return Decision{Reason: "no identity was proven"}
	}
	d := r.decide(req)
	if d.Allowed && !req.Database.allowsUser(req.DBUser) {
		return Decision{Rule: d.Rule, Reason: fmt.Sprintf("rule %q allows it, but database %s may be reached only as db_users %v (its db_users in the proxy's configuration)",
			d.Rule, req.Database.Name, req.Database.DBUsers)}
	}
	return d
}

func (r *RBAC) decide(req AccessRequest) Decision {
	for _, rule := range r.Rules {
		if rule.Effect == "deny" && rule.matches(req, true) {
			return Decision{Rule: rule.Name, Reason: fmt.Sprintf("rule %q denies it", rule.Name)}
		}
	}
	for _, rule := range r.Rules {
		if rule.Effect != "deny" && rule.matches(req, true) {
			return Decision{Allowed: true, Rule: rule.Name, Reason: fmt.Sprintf("rule %q allows it", rule.Name)}
		}
	}
	// Say what would have to change: a rule that lets the identity reach the
	// database but not as this user or on this database name.
	for _, rule := range r.Rules {
		if rule.Effect != "deny" && rule.matches(req, false) {
			return Decision{Rule: rule.Name, Reason: fmt.Sprintf("rule %q allows %s only as db_users %v on db_names %v: add %q and %q there, or another rule",
				rule.Name, req.Database.Name, rule.DBUsers, rule.DBNames, req.DBUser, req.DBName)}
		}
	}
	return Decision{Reason: fmt.Sprintf("no rule allows it (access is denied by default): add a rule with this identity, database %s, db_users [%q] and db_names [%q]",
		req.Database.Name, req.DBUser, req.DBName)}
}

// certIdentity is the identity of a verified client certificate: its
// subject, matched attribute by attribute.
func certIdentity(st *tls.ConnectionState) Identity {
	if st == nil || len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return Identity{}
	}
	subject := st.PeerCertificates[0].Subject
	return Identity{Subject: &subject}
}

// route picks the gateway's target database: by the TLS server name the
// client asked for (<database>.<anything>), or by a database parameter of
// the form <database>/<db name>.
func (s *session) route(conn net.Conn, requested string) (*Database, string, error) {
	if tc, ok := conn.(*tls.Conn); ok {
		if sni := tc.ConnectionState().ServerName; sni != "" {
			label, _, _ := strings.Cut(sni, ".")
			if db := s.srv.config().Database(label); db != nil {
				return db, requested, nil
			}
		}
	}
	target, dbName, found := strings.Cut(requested, "/")
	if !found {
		dbName = s.user
	}
	db := s.srv.config().Database(target)
	if db == nil {
		return nil, "", fmt.Errorf("no database %q behind this gateway: connect with the database name <database>/<db name>, for example orders/app", sanitize(target))
	}
	return db, dbName, nil
}

// clientIdentity works out who a gateway client is: the subject of its
// certificate, or the IAM identity behind the identity token it gives as
// its password (askPassword asks for one, in the client's protocol). On
// failure it returns what denied it and the message for the client.
func (s *session) clientIdentity(conn net.Conn, askPassword func() (string, error)) (id Identity, result, msg string) {
	tc, encrypted := conn.(*tls.Conn)
	if encrypted {
		st := tc.ConnectionState()
		if id = certIdentity(&st); !id.IsZero() {
			return id, "", ""
		}
	}
	if s.srv.identities == nil {
		return Identity{}, "no_client_certificate", "rdsgate: the gateway needs TLS with a client certificate signed by its client CA (sslcert/sslkey, or --ssl-cert/--ssl-key)"
	}
	if !encrypted {
		return Identity{}, "no_identity", "rdsgate: the gateway needs TLS before an identity token is sent (sslmode=require, or --ssl)"
	}
	pw, err := askPassword()
	if err != nil {
		return Identity{}, "client_error", ""
	}
	if !IsIdentityToken(pw) {
		return Identity{}, "no_identity", "rdsgate: prove who you are with a client certificate, or with an IAM identity token as the password: `rdsgate db connect` and `rdsgate db env` make one"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	id, err = s.srv.identities.verify(ctx, pw)
	if err != nil {
		var refused *errIdentity
		if errors.As(err, &refused) {
			s.logger().Info("identity token refused", "token", tokenDigest(pw), "reason", refused.msg)
			return Identity{}, "identity", "rdsgate: " + refused.msg
		}
		s.logger().Warn("cannot check an identity token with STS", "error", err)
		return Identity{}, "identity_unavailable", "rdsgate: the gateway could not check the identity token with STS; try again"
	}
	return id, "", ""
}

// authorize checks the client's identities against the RBAC. It returns a
// denial reason and message ("" when allowed) and the rule that decided.
func (s *session) authorize(id Identity) (reason, msg, rule string) {
	s.ident, s.identity = id, id.String()
	return s.authorizeDB(s.dbName)
}

// authorizeDB checks the session's identity and user on a database name:
// at login, and again when a MySQL session changes its database.
func (s *session) authorizeDB(dbName string) (reason, msg, rule string) {
	d := s.srv.rules().Check(AccessRequest{Identity: s.ident, Database: s.db, DBUser: s.user, DBName: dbName})
	if d.Allowed {
		s.logger().Debug("access allowed", "rule", d.Rule, "db_name", sanitize(dbName))
		return "", "", d.Rule
	}
	return "rbac", fmt.Sprintf("rdsgate: %s may not connect to %s as %q on database %q: %s", s.identity, s.db.Name, sanitize(s.user), sanitize(dbName), d.Reason), d.Rule
}

// Reachable says what an identity may do on a database: the db users and
// db names the allow rules give it, the rules, and whether it can connect
// at all (a deny rule for every user and name takes the database away).
func (r *RBAC) Reachable(id Identity, db *Database) (users, names, rules []string, ok bool) {
	if r.Validate() != nil || id.IsZero() {
		return nil, nil, nil, false
	}
	req := AccessRequest{Identity: id, Database: db}
	for _, rule := range r.Rules {
		if rule.Effect == "deny" && rule.matches(req, false) && (len(rule.DBUsers) == 0 || matchAny(rule.DBUsers, "*")) &&
			(len(rule.DBNames) == 0 || matchAny(rule.DBNames, "*")) {
			return nil, nil, []string{rule.Name}, false
		}
	}
	seenU, seenN := map[string]bool{}, map[string]bool{}
	for _, rule := range r.Rules {
		if rule.Effect == "deny" || !rule.matches(req, false) {
			continue
		}
		rules = append(rules, rule.Name)
		for _, u := range rule.DBUsers {
			if u == "*" && len(db.DBUsers) > 0 && !db.allowsUser("*") {
				for _, du := range db.DBUsers {
					if !seenU[du] {
						seenU[du] = true
						users = append(users, du)
					}
				}
				continue
			}
			if !db.allowsUser(u) && !strings.ContainsAny(u, "*?") {
				continue
			}
			if !seenU[u] {
				seenU[u] = true
				users = append(users, u)
			}
		}
		for _, n := range rule.DBNames {
			if !seenN[n] {
				seenN[n] = true
				names = append(names, n)
			}
		}
	}
	return users, names, rules, len(rules) > 0 && len(users) > 0
}
