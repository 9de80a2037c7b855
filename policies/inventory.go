package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Engine is a database engine as RDS names it.
type Engine string

// Engines that support IAM database authentication.
const (
	EnginePostgres       Engine = "postgres"
	EngineMySQL          Engine = "mysql"
	EngineMariaDB        Engine = "mariadb"
	EngineAuroraPostgres Engine = "aurora-postgresql"
	EngineAuroraMySQL    Engine = "aurora-mysql"
	// Redshift clusters (kind cluster) and Redshift Serverless workgroups
	// (kind workgroup) are served with temporary credentials from the
	// Redshift APIs, not rds-db:connect: plans leave them out.
	EngineRedshift           Engine = "redshift"
	EngineRedshiftServerless Engine = "redshift-serverless"
)

var engines = []Engine{EngineAuroraMySQL, EngineAuroraPostgres, EngineMariaDB, EngineMySQL, EnginePostgres, EngineRedshift, EngineRedshiftServerless}

// Protocol is the wire protocol of an engine: "postgres" or "mysql".
func (e Engine) Protocol() string {
	switch e {
	case EnginePostgres, EngineAuroraPostgres, EngineRedshift, EngineRedshiftServerless:
		return "postgres"
	default:
		return "mysql"
	}
}

// Redshift reports whether the engine is Redshift or Redshift Serverless.
func (e Engine) Redshift() bool { return e == EngineRedshift || e == EngineRedshiftServerless }

// Aurora reports whether the engine is an Aurora engine.
func (e Engine) Aurora() bool { return strings.HasPrefix(string(e), "aurora") }

// Database is one entry of an inventory: a database rdsgate serves, and the
// database users that may connect to it with IAM authentication.
type Database struct {
	// Name is rdsgate's name for the database, unique in the inventory.
	Name string `json:"name"`
	// Engine is the RDS engine: postgres, mysql, mariadb, aurora-postgresql, aurora-mysql.
	Engine Engine `json:"engine"`
	// EngineVersion is required for mariadb, where IAM auth needs 10.6 or later.
	EngineVersion string `json:"engine_version,omitempty"`
	// EngineMode is the cluster's engine mode; "serverless" (Aurora Serverless v1) is refused.
	EngineMode string `json:"engine_mode,omitempty"`
	// Kind is instance, cluster or proxy (workgroup for Redshift Serverless).
	Kind ResourceKind `json:"kind"`
	// Identifier is the AWS identifier (instance, cluster or proxy name).
	Identifier string `json:"identifier,omitempty"`
	// ResourceID is the DbiResourceId, DbClusterResourceId or proxy id used in rds-db ARNs.
	ResourceID string `json:"resource_id"`
	Region     string `json:"region"`
	AccountID  string `json:"account_id"`
	Endpoint   string `json:"endpoint,omitempty"`
	Port       int    `json:"port,omitempty"`
	// DBUsers are the database users the proxy may connect as; "*" means any.
	DBUsers []string `json:"db_users"`
	// Labels are free-form key/values users filter on (env, team, ...).
	Labels map[string]string `json:"labels,omitempty"`
}

// Inventory is the set of databases a plan covers.
type Inventory struct {
	Databases []Database `json:"databases"`
	// Skipped lists what discovery found but rdsgate cannot serve, and why.
	// The planner ignores it.
	Skipped []SkippedDatabase `json:"skipped,omitempty"`
}

// DisambiguateNames makes names unique where several databases of the
// inventories share one, as discovery across regions or accounts finds
// them: each of those gets "-" and what suffix says of it (its region, its
// account).
func DisambiguateNames(invs []*Inventory, suffix func(Database) string) {
	count := map[string]int{}
	for _, inv := range invs {
		for _, d := range inv.Databases {
			count[d.Name]++
		}
	}
	for _, inv := range invs {
		for i, d := range inv.Databases {
			if count[d.Name] > 1 {
				inv.Databases[i].Name += "-" + suffix(d)
			}
		}
	}
}

// SkippedDatabase is a database discovery left out.
type SkippedDatabase struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Reason string `json:"reason"`
	// IAMAuthDisabled marks a database skipped only because IAM database
	// authentication is off: an instance or a cluster, as Kind says.
	IAMAuthDisabled bool         `json:"iam_auth_disabled,omitempty"`
	Kind            ResourceKind `json:"kind,omitempty"`
}

// InputError is a problem with one field of one entry of an input file.
type InputError struct {
	Entry string // for example databases[3] ("orders")
	// Index is the entry's position in the list it came from, or -1.
	Index int
	Field string
	Msg   string
}

func (e *InputError) Error() string {
	switch {
	case e.Entry == "" && e.Field == "":
		return e.Msg
	case e.Entry == "":
		return e.Field + ": " + e.Msg
	case e.Field == "":
		return e.Entry + ": " + e.Msg
	}
	return e.Entry + ": " + e.Field + ": " + e.Msg
}

// ErrInvalidInput marks errors in files and flags given by the user.
var ErrInvalidInput = errors.New("invalid input")

// InputErrors is every problem found in one input, so a user can fix them all
// in one pass.
type InputErrors struct {
	Source string
	List   []*InputError
}

const maxReportedErrors = 20

func (e *InputErrors) Error() string {
	var b strings.Builder
	if len(e.List) == 1 {
		fmt.Fprintf(&b, "%s: %s", e.Source, e.List[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s:", e.Source, Count(len(e.List), "problem"))
	for i, ie := range e.List {
		if i == maxReportedErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.List)-i)
			break
		}
		b.WriteString("\n  - ")
		b.WriteString(ie.Error())
	}
	return b.String()
}

func (e *InputErrors) Unwrap() error { return ErrInvalidInput }

// ParseInventory reads an inventory file and validates every entry. source
// names the file in errors.
func ParseInventory(data []byte, source string) (*Inventory, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, &InputErrors{Source: source, List: []*InputError{{Msg: describeJSONError(data, err) + `; an inventory is {"databases":[{...}]}`}}}
	}
	errs := &InputErrors{Source: source}
	for k := range top {
		if k != "databases" && k != "skipped" {
			errs.List = append(errs.List, &InputError{Index: -1, Msg: fmt.Sprintf("unknown top-level field %q; an inventory has \"databases\" (and \"skipped\", which discovery writes)", k)})
		}
	}
	var raws []json.RawMessage
	if rawList, ok := top["databases"]; !ok {
		errs.List = append(errs.List, &InputError{Index: -1, Msg: `missing "databases" list`})
	} else if err := json.Unmarshal(rawList, &raws); err != nil {
		errs.List = append(errs.List, &InputError{Index: -1, Field: "databases", Msg: "must be a list of objects"})
	}
	inv := &Inventory{Databases: make([]Database, 0, len(raws))}
	for i, raw := range raws {
		var db Database
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&db); err != nil {
			errs.List = append(errs.List, &InputError{Entry: fmt.Sprintf("databases[%d]", i), Index: i, Msg: describeFieldError(err)})
			continue
		}
		inv.Databases = append(inv.Databases, db)
	}
	if len(errs.List) > 0 {
		return nil, errs
	}
	if err := inv.Validate(); err != nil {
		var ie *InputErrors
		if errors.As(err, &ie) {
			ie.Source = source
		}
		return nil, err
	}
	return inv, nil
}

func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Offset counts the bytes read, including the offending one.
		line, col := lineCol(data, int(syn.Offset)-1)
		return fmt.Sprintf("invalid JSON at line %d, column %d: %v", line, col, syn)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("expected a JSON object, got %s", typ.Value)
	}
	return "invalid JSON: " + err.Error()
}

func lineCol(data []byte, offset int) (int, int) {
	offset = max(0, min(offset, len(data)))
	line := 1 + bytes.Count(data[:offset], []byte("\n"))
	col := offset - bytes.LastIndexByte(data[:offset], '\n')
	return line, col
}

func describeFieldError(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("%s: expected %s, got %s", typ.Field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s; known fields are name, engine, engine_version, engine_mode, kind, identifier, resource_id, region, account_id, endpoint, port, db_users, labels", msg)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64":
		return "a number"
	case "slice":
		return "a list"
	case "map", "struct":
		return "an object"
	}
	return "a " + kind
}

var (
	dbNamePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	dbUserPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$.@-]{0,62}$`)
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// Validate checks every entry: known engine, kind and region, a resource id
// of the right form, a 12-digit account, sane users, unique names, and the
// cases AWS does not support (Aurora Serverless v1, MariaDB before 10.6).
func (inv *Inventory) Validate() error {
	errs := &InputErrors{Source: "inventory"}
	seen := map[string]int{}
	for i := range inv.Databases {
		db := &inv.Databases[i]
		entry := fmt.Sprintf("databases[%d]", i)
		if db.Name != "" {
			entry += fmt.Sprintf(" (%q)", db.Name)
		}
		add := func(field, format string, args ...any) {
			errs.List = append(errs.List, &InputError{Entry: entry, Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		switch {
		case db.Name == "":
			add("name", "is required")
		case !dbNamePattern.MatchString(db.Name):
			add("name", "%q must start with a letter or digit and use only letters, digits, '.', '_' and '-' (at most 63)", db.Name)
		default:
			if j, dup := seen[db.Name]; dup {
				add("name", "%q is used by databases[%d] too; names must be unique", db.Name, j)
			} else {
				seen[db.Name] = i
			}
		}
		validateEngine(db, add)
		if db.Engine.Redshift() {
			want := KindCluster
			if db.Engine == EngineRedshiftServerless {
				want = KindWorkgroup
			}
			if db.Kind != want {
				add("kind", "%s is served as kind %q", db.Engine, want)
			}
			if db.Identifier == "" {
				add("identifier", "is required for %s: the cluster identifier or the workgroup name the credentials are asked for", db.Engine)
			}
		} else if !ValidResourceKind(db.Kind) {
			add("kind", "unknown kind %q; use instance, cluster or proxy", db.Kind)
		} else {
			if db.Engine.Aurora() && db.Kind == KindInstance {
				add("kind", "Aurora authorizes IAM users on the cluster: use kind \"cluster\" with the cluster's DbClusterResourceId (cluster-...)")
			}
			if db.ResourceID == "" {
				add("resource_id", "is required; %s", resourceIDHints[db.Kind])
			} else if err := ValidateResourceID(db.Kind, db.ResourceID); err != nil {
				add("resource_id", "%s", strings.TrimPrefix(err.Error(), ErrResourceID.Error()+" "))
			}
		}
		if db.Region == "" {
			add("region", "is required")
		} else if _, err := PartitionOf(db.Region); err != nil {
			add("region", "%v", err)
		}
		if err := ValidateAccountID(db.AccountID); err != nil {
			add("account_id", "%v", err)
		}
		if db.Endpoint != "" && !hostnamePattern.MatchString(db.Endpoint) {
			add("endpoint", "%q is not a host name; give the endpoint without scheme or port", db.Endpoint)
		}
		if db.Port < 0 || db.Port > 65535 {
			add("port", "%d is not a TCP port", db.Port)
		}
		validateUsers(db.DBUsers, add)
	}
	if len(errs.List) > 0 {
		return errs
	}
	return nil
}

func validateEngine(db *Database, add func(field, format string, args ...any)) {
	if !slices.Contains(engines, db.Engine) {
		hint := ""
		if best := nearestEngine(string(db.Engine)); best != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", best)
		}
		add("engine", "unknown engine %q%s; use one of %s", db.Engine, hint, joinEngines())
		return
	}
	if db.EngineMode == "serverless" {
		add("engine_mode", "Aurora Serverless v1 does not support IAM database authentication; migrate the cluster to Aurora Serverless v2 (engine mode provisioned)")
	}
	if db.Engine == EngineMariaDB {
		switch ok, err := versionAtLeast(db.EngineVersion, 10, 6); {
		case db.EngineVersion == "":
			add("engine_version", "is required for mariadb: IAM database authentication needs MariaDB 10.6 or later")
		case err != nil:
			add("engine_version", "%v", err)
		case !ok:
			add("engine_version", "MariaDB %s does not support IAM database authentication; upgrade to 10.6 or later", db.EngineVersion)
		}
	}
}

func nearestEngine(s string) string {
	if s == "aurora" {
		return string(EngineAuroraMySQL)
	}
	names := make([]string, len(engines))
	for i, e := range engines {
		names[i] = string(e)
	}
	return Nearest(s, names, 3)
}

func joinEngines() string {
	s := make([]string, len(engines))
	for i, e := range engines {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

func versionAtLeast(v string, major, minor int) (bool, error) {
	parts := strings.SplitN(v, ".", 3)
	bad := fmt.Errorf("engine version %q is not of the form 10.6 or 10.6.14", v)
	if len(parts) < 2 {
		return false, bad
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false, bad
	}
	return ma > major || (ma == major && mi >= minor), nil
}

// ValidateDBUsers checks a list of database users as an inventory entry's
// db_users: not empty, no repeats, "*" alone, names a database accepts.
func ValidateDBUsers(users []string) error {
	var errs []string
	validateUsers(users, func(_, format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) })
	if len(errs) > 0 {
		return &FieldError{Field: "db_users", Reason: strings.Join(errs, "; ")}
	}
	return nil
}

func validateUsers(users []string, add func(field, format string, args ...any)) {
	if len(users) == 0 {
		add("db_users", `is empty; list the database users the proxy may connect as, or ["*"] for any user`)
		return
	}
	seen := map[string]bool{}
	for _, u := range users {
		switch {
		case seen[u]:
			add("db_users", "%q is listed twice", u)
		case u == "*":
			if len(users) > 1 {
				add("db_users", `"*" already allows every user; list either "*" or named users, not both`)
			}
		case !dbUserPattern.MatchString(u):
			add("db_users", "%q is not a database user name (letters, digits, _ $ . @ -, starting with a letter or _, at most 63)", u)
		}
		seen[u] = true
	}
}

// ValidEngine reports whether rdsgate serves an engine.
func ValidEngine(e Engine) bool { return slices.Contains(engines, e) }

// ValidateDatabaseName checks rdsgate's name for a database.
func ValidateDatabaseName(name string) error {
	if !dbNamePattern.MatchString(name) {
		return fmt.Errorf("%q must start with a letter or digit and use only letters, digits, '.', '_' and '-' (at most 63)", name)
	}
	return nil
}
