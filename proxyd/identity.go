package proxyd

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rdsgate/rdsgate/internal/wildcard"
)

// Identity is who a gateway client proved to be: an IAM caller (the ARN
// STS reported for its identity token) or the subject of a client
// certificate the gateway verified.
type Identity struct {
	ARN     string
	Subject *pkix.Name
}

// IdentityFromARN is an IAM caller as STS names it
// (arn:aws:sts::123456789012:assumed-role/dev/alice, arn:aws:iam::...:user/ops/bob).
func IdentityFromARN(arn string) Identity { return Identity{ARN: arn} }

// IdentityFromSubject parses a certificate subject written as RFC 4514 says
// (CN=alice,O=dba; a comma inside a value is escaped as \,), for `rdsgate
// access check`.
func IdentityFromSubject(dn string) (Identity, error) {
	attrs, err := parseDN(dn, false)
	if err != nil {
		return Identity{}, err
	}
	var seq pkix.RDNSequence
	for _, a := range attrs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: a.value}})
	}
	var n pkix.Name
	n.FillFromRDNSequence(&seq)
	return Identity{Subject: &n}, nil
}

// ParseIdentity reads an identity given on the command line: an ARN, or a
// certificate subject.
func ParseIdentity(s string) (Identity, error) {
	const forms = "arn:aws:iam::123456789012:role/NAME, arn:aws:iam::123456789012:user/NAME, " +
		"arn:aws:sts::123456789012:assumed-role/ROLE/SESSION, or a certificate subject such as CN=alice,O=example"
	if strings.HasPrefix(s, "arn:") {
		if !identityARNRe.MatchString(s) {
			return Identity{}, fmt.Errorf("not an IAM identity ARN: give %s", forms)
		}
		return IdentityFromARN(s), nil
	}
	id, err := IdentityFromSubject(s)
	if err != nil {
		return Identity{}, fmt.Errorf("neither an ARN nor a certificate subject (%v): give %s", err, forms)
	}
	return id, nil
}

// identityARNRe is what an IAM caller's ARN looks like: a role, a user, an
// assumed-role session, an account's root, or a federated user.
var identityARNRe = regexp.MustCompile(`^arn:aws(-cn|-us-gov|-iso|-iso-b)?:(iam::[0-9]{12}:(role/.+|user/.+|root)|sts::[0-9]{12}:(assumed-role/[^/]+/.+|federated-user/.+))$`)

func (id Identity) String() string {
	if id.Subject != nil {
		return id.Subject.String()
	}
	return id.ARN
}

// IsZero reports whether no identity was proven.
func (id Identity) IsZero() bool { return id.ARN == "" && id.Subject == nil }

// arnNames are the names an IAM caller is matched by. An assumed-role
// session is its role (STS reports the role without its path, so roles
// are matched by account and name, which IAM keeps unique) and the session
// itself; a user is matched by account and name too, so a rule written
// with or without the user's path means the same user.
func (id Identity) arnNames() []string {
	if id.ARN == "" {
		return nil
	}
	parts := strings.SplitN(id.ARN, ":", 6)
	if len(parts) != 6 {
		return []string{id.ARN}
	}
	switch res := parts[5]; {
	case parts[2] == "sts" && strings.HasPrefix(res, "assumed-role/"):
		role, _, _ := strings.Cut(strings.TrimPrefix(res, "assumed-role/"), "/")
		return []string{"arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + role, id.ARN}
	case parts[2] == "iam" && (strings.HasPrefix(res, "user/") || strings.HasPrefix(res, "role/")):
		kind, rest, _ := strings.Cut(res, "/")
		name := rest[strings.LastIndexByte(rest, '/')+1:]
		return []string{"arn:" + parts[1] + ":iam::" + parts[4] + ":" + kind + "/" + name}
	}
	return []string{id.ARN}
}

// Names are what the identity is shown and matched as: ARNs for an IAM
// caller, the subject for a certificate.
func (id Identity) Names() []string {
	if id.Subject != nil {
		return []string{id.Subject.String()}
	}
	return id.arnNames()
}

// identityPattern is one entry of a rule's identities, compiled: "*"
// (anyone), an ARN pattern, or a certificate subject pattern whose
// attributes are matched one by one.
type identityPattern struct {
	any bool
	arn string // lower case for IAM role and user ARNs, whose names IAM compares without case
	iam bool
	dn  []dnAttr
}

type dnAttr struct {
	oid   asn1.ObjectIdentifier
	name  string // as written, for messages
	value string // a pattern with * and ? for rules; a value for subjects
}

// compileIdentity reads a rule identity. It returns a warning when the rule
// means less than it says (a role path, which STS does not report, is
// ignored).
func compileIdentity(p string) (identityPattern, string, error) {
	switch {
	case p == "*":
		return identityPattern{any: true}, "", nil
	case strings.HasPrefix(p, "arn:"):
		return compileARN(p)
	}
	attrs, err := parseDN(p, true)
	if err != nil {
		return identityPattern{}, "", fmt.Errorf("identity %q: %v (write an IAM ARN, a certificate subject such as CN=alice,O=dba, or * for anyone)", p, err)
	}
	return identityPattern{dn: attrs}, "", nil
}

func compileARN(p string) (identityPattern, string, error) {
	parts := strings.SplitN(p, ":", 6)
	if len(parts) != 6 {
		return identityPattern{}, "", fmt.Errorf("identity %q is not an ARN (arn:aws:iam::123456789012:role/NAME)", p)
	}
	if parts[2] != "iam" {
		return identityPattern{arn: p}, "", nil
	}
	kind, rest, ok := strings.Cut(parts[5], "/")
	if !ok || (kind != "role" && kind != "user") {
		return identityPattern{arn: strings.ToLower(p), iam: true}, "", nil
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return identityPattern{arn: strings.ToLower(p), iam: true}, "", nil
	}
	path, name := "/"+rest[:i+1], rest[i+1:]
	if strings.ContainsAny(path, "*?") || strings.ContainsAny(name, "*?") {
		return identityPattern{}, "", fmt.Errorf("identity %q matches by the %s's path, which STS does not report for callers: "+
			"name the %ss (arn:...:%s/NAME, wildcards in the name only), or give them a common name prefix", p, kind, kind, kind)
	}
	short := strings.Join(parts[:5], ":") + ":" + kind + "/" + name
	warn := fmt.Sprintf("identity %q: the path %s is ignored; the rule matches %s %s of account %s whatever its path (STS reports callers without it, and IAM %s names are unique in an account)",
		p, path, kind, name, parts[4], kind)
	return identityPattern{arn: strings.ToLower(short), iam: true}, warn, nil
}

func (ip *identityPattern) matches(id Identity) bool {
	switch {
	case ip.any:
		return !id.IsZero()
	case ip.dn != nil:
		return id.Subject != nil && subjectMatches(ip.dn, id.Subject)
	}
	for _, n := range id.arnNames() {
		v := n
		if ip.iam && strings.Contains(n, ":iam::") {
			v = strings.ToLower(n)
		}
		if wildcard.Match(ip.arn, v) {
			return true
		}
	}
	return false
}

// subjectMatches: every attribute the pattern names must be in the subject
// with a value the pattern's matches; attributes it does not name are not
// constrained. Values are compared one attribute at a time, never as a
// formatted string, so "CN=mallory,O=dba" as a common name is not an O.
func subjectMatches(pattern []dnAttr, subject *pkix.Name) bool {
	for _, want := range pattern {
		found := false
		for _, have := range subject.Names {
			v, ok := have.Value.(string)
			if ok && have.Type.Equal(want.oid) && wildcard.Match(want.value, v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var dnTypes = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "SERIALNUMBER": {2, 5, 4, 5}, "C": {2, 5, 4, 6}, "L": {2, 5, 4, 7}, "ST": {2, 5, 4, 8},
	"STREET": {2, 5, 4, 9}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11}, "POSTALCODE": {2, 5, 4, 17},
	"DC": {0, 9, 2342, 19200300, 100, 1, 25}, "UID": {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1}, "E": {1, 2, 840, 113549, 1, 9, 1},
}

// parseDN reads an RFC 4514 distinguished name (CN=a\,b,O=dba, also with +
// between the attributes of one RDN) into its attributes, unescaped. With
// patterns, * and ? stay wildcards.
func parseDN(s string, patterns bool) ([]dnAttr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty subject")
	}
	var out []dnAttr
	i := 0
	for i <= len(s) {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q has no =: a subject is TYPE=value pairs separated by commas", s[i:])
		}
		typ := strings.TrimSpace(s[i : i+eq])
		oid, ok := dnTypes[strings.ToUpper(typ)]
		if !ok {
			var err error
			if oid, err = parseOID(typ); err != nil {
				return nil, fmt.Errorf("unknown attribute type %q (use CN, O, OU, C, L, ST, DC, UID, E or a dotted OID)", typ)
			}
		}
		i += eq + 1
		var val strings.Builder
		for i < len(s) && s[i] != ',' && s[i] != '+' {
			c := s[i]
			if c != '\\' {
				val.WriteByte(c)
				i++
				continue
			}
			if i+1 >= len(s) {
				return nil, errors.New("a subject cannot end with \\")
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b, _ := hex.DecodeString(s[i+1 : i+3])
				val.Write(b)
				i += 3
				continue
			}
			val.WriteByte(s[i+1])
			i += 2
		}
		v := strings.TrimSpace(val.String())
		if v == "" && !patterns {
			return nil, fmt.Errorf("attribute %s has no value", typ)
		}
		out = append(out, dnAttr{oid: oid, name: typ, value: v})
		if i >= len(s) {
			break
		}
		i++ // , or +
	}
	return out, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(s, ".") {
		n := 0
		if part == "" {
			return nil, errors.New("empty arc")
		}
		for _, c := range part {
			if c < '0' || c > '9' {
				return nil, errors.New("not a number")
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, errors.New("too short")
	}
	return oid, nil
}
