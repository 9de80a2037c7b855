package proxyd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// RBAC says which identities may reach which databases, as which database
// users, on which database names. Access is denied unless a rule allows it,
// and an explicit deny wins over any allow.
type RBAC struct {
	Rules []Rule `json:"rules"`
}

// Rule is one entry of the RBAC file. Every list matches with * and ?
// wildcards; an empty list matches nothing, ["*"] everything.
type Rule struct {
	Name string `json:"name"`
	// Effect is allow (the default) or deny.
	Effect string `json:"effect,omitempty"`
	// Identities are certificate subjects ("CN=alice", "CN=*,O=dba") or IAM
	// ARNs (arn:aws:iam::123456789012:role/app-*).
	Identities []string `json:"identities"`
	// Databases by name; Labels narrow them further (all must match).
	Databases []string          `json:"databases"`
	Labels    map[string]string `json:"labels,omitempty"`
	DBUsers   []string          `json:"db_users"`
	DBNames   []string          `json:"db_names"`
}

// AccessRequest is what a client asks for.
type AccessRequest struct {
	Identities []string // every name the client is known by
	Database   *Database
	DBUser     string
	DBName     string
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
	var r RBAC
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: rbac_file %s: %v", ErrConfig, path, err)
	}
	return &r, r.Validate()
}

// Validate checks the rules.
func (r *RBAC) Validate() error {
	names := map[string]bool{}
	for i, rule := range r.Rules {
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
	}
	return nil
}

func matchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if wildcard(p, value) {
			return true
		}
	}
	return false
}

// wildcard matches * (any run) and ? (one character).
func wildcard(pattern, s string) bool {
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func (rule *Rule) matches(req AccessRequest, checkUserAndName bool) bool {
	who := false
	for _, id := range req.Identities {
		who = who || matchAny(rule.Identities, id)
	}
	if !who {
		return false
	}
	if len(rule.Databases) > 0 && !matchAny(rule.Databases, req.Database.Name) {
		return false
	}
	for k, v := range rule.Labels {
		if !wildcard(v, req.Database.Labels[k]) {
			return false
		}
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

// Check decides a request and says which rule decided it.
func (r *RBAC) Check(req AccessRequest) Decision {
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

// certIdentities are the names a verified client certificate is known by:
// its full subject and its CN alone.
func certIdentities(st *tls.ConnectionState) []string {
	if st == nil || len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return nil
	}
	c := st.PeerCertificates[0]
	return []string{c.Subject.String(), "CN=" + c.Subject.CommonName}
}

// route picks the gateway's target database: by the TLS server name the
// client asked for (<database>.<anything>), or by a database parameter of
// the form <database>/<db name>.
func (s *session) route(conn net.Conn, requested string) (*Database, string, error) {
	if tc, ok := conn.(*tls.Conn); ok {
		if sni := tc.ConnectionState().ServerName; sni != "" {
			label, _, _ := strings.Cut(sni, ".")
			if db := s.srv.cfg.Database(label); db != nil {
				return db, requested, nil
			}
		}
	}
	target, dbName, found := strings.Cut(requested, "/")
	if !found {
		dbName = s.user
	}
	db := s.srv.cfg.Database(target)
	if db == nil {
		return nil, "", fmt.Errorf("no database %q behind this gateway: connect with the database name <database>/<db name>, for example orders/app", sanitize(target))
	}
	return db, dbName, nil
}

// clientIdentity works out who a gateway client is: the subject of its
// certificate, or the IAM identity behind the identity token it gives as
// its password (askPassword asks for one, in the client's protocol). On
// failure it returns what denied it and the message for the client.
func (s *session) clientIdentity(conn net.Conn, askPassword func() (string, error)) (ids []string, result, msg string) {
	tc, encrypted := conn.(*tls.Conn)
	if encrypted {
		st := tc.ConnectionState()
		ids = certIdentities(&st)
	}
	if len(ids) > 0 {
		return ids, "", ""
	}
	if s.srv.identities == nil {
		return nil, "no_client_certificate", "rdsgate: the gateway needs TLS with a client certificate signed by its client CA (sslcert/sslkey, or --ssl-cert/--ssl-key)"
	}
	if !encrypted {
		return nil, "no_identity", "rdsgate: the gateway needs TLS before an identity token is sent (sslmode=require, or --ssl)"
	}
	pw, err := askPassword()
	if err != nil {
		return nil, "client_error", ""
	}
	if !IsIdentityToken(pw) {
		return nil, "no_identity", "rdsgate: prove who you are with a client certificate, or with an IAM identity token as the password: `rdsgate db connect` and `rdsgate db env` make one"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ids, err = s.srv.identities.verify(ctx, pw)
	if err != nil {
		var refused *errIdentity
		if errors.As(err, &refused) {
			s.logger().Info("identity token refused", "token", tokenDigest(pw), "reason", refused.msg)
			return nil, "identity", "rdsgate: " + refused.msg
		}
		s.logger().Warn("cannot check an identity token with STS", "error", err)
		return nil, "identity_unavailable", "rdsgate: the gateway could not check the identity token with STS; try again"
	}
	return ids, "", ""
}

// authorize checks the client's identities against the RBAC. It returns a
// denial reason and message ("" when allowed) and the rule that decided.
func (s *session) authorize(ids []string) (reason, msg, rule string) {
	s.identity = ids[0]
	d := s.srv.rbac.Check(AccessRequest{Identities: ids, Database: s.db, DBUser: s.user, DBName: s.dbName})
	if d.Allowed {
		s.logger().Debug("access allowed", "rule", d.Rule)
		return "", "", d.Rule
	}
	return "rbac", fmt.Sprintf("rdsgate: %s may not connect to %s as %q on database %q: %s", ids[0], s.db.Name, sanitize(s.user), sanitize(s.dbName), d.Reason), d.Rule
}

// Reachable says what an identity may do on a database: the db users and
// db names the allow rules give it, the rules, and whether it can connect
// at all (a deny rule for every user and name takes the database away).
func (r *RBAC) Reachable(ids []string, db *Database) (users, names, rules []string, ok bool) {
	req := AccessRequest{Identities: ids, Database: db}
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
	return users, names, rules, len(rules) > 0
}
