package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
	"github.com/rdsgate/rdsgate/proxyd/gatewayclient"
)

// The users' side of a gateway: which databases the caller may reach, and
// connecting to them with AWS IAM as the identity.

func gatewayFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "gateway", EnvVars: []string{"RDSGATE_GATEWAY"}, Usage: "the gateway's API, https://HOST:PORT"},
		&cli.StringFlag{Name: "gateway-ca", EnvVars: []string{"RDSGATE_GATEWAY_CA"}, Usage: "PEM `FILE` that verifies the gateway (default: the system's roots)"},
	}, awsFlags()...)
}

func dbCommand(cfg *config) *cli.Command {
	target := []cli.Flag{
		&cli.StringFlag{Name: "db-user", Aliases: []string{"u"}, Usage: "database user (default: the only one you may use)"},
		&cli.StringFlag{Name: "db-name", Aliases: []string{"d"}, Usage: "database name (default: the only one you may use)"},
	}
	return &cli.Command{
		Name:  "db",
		Usage: "list and connect to the databases a gateway lets you reach, as your AWS identity",
		Description: "Your AWS credentials (the SDK's chain: AWS_PROFILE, aws sso login, ...) prove who you are: each\n" +
			"connection sends the gateway a presigned sts:GetCallerIdentity bound to it, never a secret.",
		Subcommands: []*cli.Command{
			{
				Name: "ls", Usage: "list the databases you may reach, with their users and names",
				Flags:  append(gatewayFlags(), &cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"}),
				Action: func(c *cli.Context) error { return dbList(c, cfg) },
			},
			{
				Name: "connect", Usage: "start psql or mysql connected to a database", ArgsUsage: "NAME [-- CLIENT ARGS...]",
				Description: "PostgreSQL goes through a local tunnel that answers the gateway with a fresh identity token for\n" +
					"each connection, so psql needs no password and its cancel (Ctrl-C) works. MySQL connects to the\n" +
					"gateway over verified TLS with the token as a clear-text password (MYSQL_PWD, not the command line).",
				Flags:  append(gatewayFlags(), target...),
				Action: func(c *cli.Context) error { return dbConnect(c, cfg) },
			},
			{
				Name: "env", Usage: "print the connection settings for other clients (the token lasts 5 minutes)", ArgsUsage: "NAME",
				Flags:  append(append(gatewayFlags(), target...), &cli.StringFlag{Name: "format", Value: "sh", Usage: "sh or json"}),
				Action: func(c *cli.Context) error { return dbEnv(c, cfg) },
			},
			{
				Name: "logout", Usage: "forget cached identity tokens",
				Flags:  gatewayFlags(),
				Action: func(c *cli.Context) error { return dbLogout(c, cfg) },
			},
		},
	}
}

func gatewayClient(c *cli.Context) (*gatewayclient.Client, error) {
	gw := c.String("gateway")
	if gw == "" {
		return nil, usageError("name the gateway with --gateway https://HOST:PORT (or RDSGATE_GATEWAY)")
	}
	aws, err := connectAWS(c)
	if err != nil {
		return nil, err
	}
	return gatewayclient.New(gw, c.String("gateway-ca"), aws.Config.Credentials)
}

// cacheFile is where identity tokens for a gateway are kept between
// commands (mode 0600; `rdsgate db logout` removes it).
func cacheFile(gateway string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(gateway)
	name := strings.NewReplacer(":", "_", "/", "_").Replace(u.Host)
	return filepath.Join(dir, "rdsgate", "gateways", name+".json"), nil
}

type cachedToken struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// token returns a cached identity token with at least a minute left, or
// signs and caches a new one.
func token(c *cli.Context, gc *gatewayclient.Client) (string, time.Time, error) {
	path, err := cacheFile(c.String("gateway"))
	if err == nil {
		var ct cachedToken
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &ct) == nil && time.Until(ct.Expires) > time.Minute {
			return ct.Token, ct.Expires, nil
		}
	}
	tok, err := gc.Token(c.Context)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := time.Now().Add(proxyd.IdentityTokenLifetime)
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			data, _ := json.Marshal(cachedToken{Token: tok, Expires: exp})
			_ = os.WriteFile(path, data, 0o600)
		}
	}
	return tok, exp, nil
}

func dbList(c *cli.Context, cfg *config) error {
	if err := oneOf("format", c.String("format"), "table", "json"); err != nil {
		return err
	}
	gc, err := gatewayClient(c)
	if err != nil {
		return err
	}
	resp, err := gc.Databases(c.Context)
	if err != nil {
		return err
	}
	if c.String("format") == "json" {
		return writeJSON(cfg.stdout, resp)
	}
	if len(resp.Databases) == 0 {
		fmt.Fprintf(cfg.stdout, "%s may reach no database through this gateway; ask for a rule in its RBAC file (rdsgate access check explains decisions).\n", resp.Identity)
		return nil
	}
	fmt.Fprintf(cfg.stdout, "As %s:\n", resp.Identity)
	w := tabwriter.NewWriter(cfg.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DATABASE\tPROTOCOL\tDB USERS\tDB NAMES\tLABELS\tRULES")
	for _, d := range resp.Databases {
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(d.Labels)) {
			labels = append(labels, k+"="+d.Labels[k])
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Protocol, strings.Join(d.DBUsers, ","), strings.Join(d.DBNames, ","), strings.Join(labels, ","), strings.Join(d.Rules, ","))
	}
	return w.Flush()
}

// dbArgs reads NAME, the command's own flags written after it (the form
// `rdsgate db connect orders --db-user app --gateway-ca ca.pem` reads
// naturally, and urfave/cli stops parsing flags at the first argument), and
// what follows "--" for the client. Flags after NAME are set on c, so it
// runs before anything reads them.
func dbArgs(c *cli.Context) (name string, extra []string, err error) {
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return name, args[i+1:], nil
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flag, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			f := commandFlag(c.Command.Flags, flag)
			if f == nil {
				msg := fmt.Sprintf("unknown flag %s after the database name", a)
				if near := nearestFlag(c.Command.Flags, flag); near != "" {
					msg += "; did you mean --" + near + "?"
				}
				return "", nil, usageError("%s (client arguments go after --)", msg)
			}
			if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
				value, hasValue = "true", true
			}
			if !hasValue {
				if i+1 >= len(args) {
					return "", nil, usageError("%s needs a value", a)
				}
				i++
				value = args[i]
			}
			if err := c.Set(f.Names()[0], value); err != nil {
				return "", nil, usageError("%s: %v", a, err)
			}
		case name == "":
			name = a
		default:
			return "", nil, usageError("unexpected argument %q (client arguments go after --)", a)
		}
	}
	return name, nil, nil
}

// commandFlag is the flag one of whose names is name, or nil.
func commandFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// target connects to the gateway, finds the database and settles the db
// user and name.
func target(c *cli.Context, name string) (*gatewayclient.Client, *proxyd.DatabaseAccess, string, string, error) {
	gc, err := gatewayClient(c)
	if err != nil {
		return nil, nil, "", "", err
	}
	db, user, dbName, err := targetOn(c, gc, name)
	return gc, db, user, dbName, err
}

// targetOn finds the database behind a gateway and settles the db user and
// name.
func targetOn(c *cli.Context, gc *gatewayclient.Client, name string) (*proxyd.DatabaseAccess, string, string, error) {
	givenUser, givenName := c.String("db-user"), c.String("db-name")
	if name == "" {
		return nil, "", "", usageError("name the database: rdsgate db %s NAME (rdsgate db ls lists them)", c.Command.Name)
	}
	resp, err := gc.Databases(c.Context)
	if err != nil {
		return nil, "", "", err
	}
	var db *proxyd.DatabaseAccess
	var names []string
	for i := range resp.Databases {
		names = append(names, resp.Databases[i].Name)
		if resp.Databases[i].Name == name {
			db = &resp.Databases[i]
		}
	}
	if db == nil {
		if len(names) == 0 {
			return nil, "", "", &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s may not reach %q, nor any other database, through this gateway: ask its administrator for a rule in its RBAC file that names you", resp.Identity, name)}
		}
		msg := fmt.Sprintf("%s may not reach a database %q through this gateway; you may reach: %s", resp.Identity, name, strings.Join(names, ", "))
		if near := policies.Nearest(name, names, 2); near != "" {
			msg += "; did you mean " + near + "?"
		}
		return nil, "", "", &ExitError{Code: ExitFailure, Err: errors.New(msg)}
	}
	pick := func(flag, given string, allowed []string) (string, error) {
		if given != "" {
			for _, a := range allowed {
				if policies.MatchWildcard(a, given) {
					return given, nil
				}
			}
			return "", &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s may use %s only with --%s %s, not %q", resp.Identity, name, flag, strings.Join(allowed, ", "), given)}
		}
		if len(allowed) == 1 && !strings.ContainsAny(allowed[0], "*?") {
			return allowed[0], nil
		}
		return "", usageError("choose with --%s: you may use %s", flag, strings.Join(allowed, ", "))
	}
	user, err := pick("db-user", givenUser, db.DBUsers)
	if err != nil {
		return nil, "", "", err
	}
	dbName, err := pick("db-name", givenName, db.DBNames)
	if err != nil {
		return nil, "", "", err
	}
	return db, user, dbName, nil
}

func mysqlClient() (string, []string) {
	if p, err := exec.LookPath("mariadb"); err == nil {
		return p, nil
	}
	out, _ := exec.Command("mysql", "--version").Output()
	if strings.Contains(string(out), "MariaDB") {
		return "mysql", nil
	}
	// Oracle's client sends clear-text passwords only when told to; the
	// connection is TLS-verified.
	return "mysql", []string{"--enable-cleartext-plugin"}
}

func dbConnect(c *cli.Context, cfg *config) error {
	name, extra, err := dbArgs(c)
	if err != nil {
		return err
	}
	gc, db, user, dbName, err := target(c, name)
	if err != nil {
		return err
	}
	var cmd *exec.Cmd
	switch db.Protocol {
	case proxyd.ProtocolPostgres:
		tun, err := gc.OpenTunnel(c.Context, db.Name, dbName)
		if err != nil {
			return err
		}
		defer tun.Close()
		host, port, _ := net.SplitHostPort(tun.Addr)
		cmd = exec.CommandContext(c.Context, "psql", append([]string{fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, user, dbName)}, extra...)...)
		cmd.Env = os.Environ()
	default:
		addr, err := gc.Addr(c.Context, proxyd.ProtocolMySQL)
		if err != nil {
			return err
		}
		tok, _, err := token(c, gc)
		if err != nil {
			return err
		}
		host, port, _ := net.SplitHostPort(addr)
		bin, flags := mysqlClient()
		args := append(flags, "-h", host, "-P", port, "-u", user, "-D", db.Name+"/"+dbName, "--ssl")
		if ca := c.String("gateway-ca"); ca != "" {
			args = append(args, "--ssl-ca="+ca)
		}
		args = append(args, "--ssl-verify-server-cert")
		cmd = exec.CommandContext(c.Context, bin, append(args, extra...)...)
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+tok)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.stdin, cfg.stdout, cfg.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &ExitError{Code: ee.ExitCode(), Err: err, Silent: true}
		}
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	return nil
}

func dbEnv(c *cli.Context, cfg *config) error {
	name, extra, err := dbArgs(c)
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		return usageError("db env takes no client arguments: it prints settings (found %q after --)", strings.Join(extra, " "))
	}
	if err := oneOf("format", c.String("format"), "sh", "json"); err != nil {
		return err
	}
	gc, db, user, dbName, err := target(c, name)
	if err != nil {
		return err
	}
	addr, err := gc.Addr(c.Context, db.Protocol)
	if err != nil {
		return err
	}
	tok, exp, err := token(c, gc)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	var env map[string]string
	if db.Protocol == proxyd.ProtocolPostgres {
		env = map[string]string{"PGHOST": host, "PGPORT": port, "PGUSER": user, "PGDATABASE": db.Name + "/" + dbName, "PGSSLMODE": "verify-full", "PGPASSWORD": tok}
		if ca := c.String("gateway-ca"); ca != "" {
			env["PGSSLROOTCERT"] = ca
		}
	}
	var optionFile string
	if db.Protocol != proxyd.ProtocolPostgres {
		// The mysql client reads MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD
		// but no user or database from the environment: an option file
		// (mode 0600, beside the cached token) holds them all.
		if optionFile, err = writeMySQLOptions(c, db.Name, user, dbName, host, port, tok); err != nil {
			return err
		}
		env = map[string]string{"MYSQL_HOST": host, "MYSQL_TCP_PORT": port, "MYSQL_USER": user, "MYSQL_DATABASE": db.Name + "/" + dbName, "MYSQL_PWD": tok,
			"LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN": "1", "RDSGATE_MYSQL_OPTIONS": optionFile}
	}
	if c.String("format") == "json" {
		out := map[string]any{"env": env, "expires": exp.UTC().Format(time.RFC3339)}
		if optionFile != "" {
			out["command"] = []string{"mysql", "--defaults-extra-file=" + optionFile}
		}
		return writeJSON(cfg.stdout, out)
	}
	fmt.Fprintf(cfg.stdout, "# %s as %s on %s through %s; the password is an identity token valid until %s\n", db.Name, user, dbName, addr, exp.Format(time.Kitchen))
	if optionFile != "" {
		fmt.Fprintf(cfg.stdout, "# mysql and mariadb: mysql --defaults-extra-file=%s\n", optionFile)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(cfg.stdout, "export %s='%s'\n", k, env[k])
	}
	return nil
}

// writeMySQLOptions writes a client option file for a gateway database,
// for the mysql client installed here (Oracle's or MariaDB's, whose TLS
// and clear-text options differ).
func writeMySQLOptions(c *cli.Context, database, user, dbName, host, port, tok string) (string, error) {
	cache, err := cacheFile(c.String("gateway"))
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(cache, ".json") + "-" + database + ".cnf"
	var b strings.Builder
	fmt.Fprintf(&b, "# rdsgate db env %s: the password is an identity token; rdsgate db logout removes this file\n[client]\n", database)
	// protocol=TCP: both clients take host=localhost for their socket.
	fmt.Fprintf(&b, "host=%s\nport=%s\nprotocol=TCP\nuser=%s\ndatabase=%s/%s\npassword=%s\n", host, port, user, database, dbName, tok)
	if ca := c.String("gateway-ca"); ca != "" {
		fmt.Fprintf(&b, "ssl-ca=%s\n", ca)
	}
	if _, oracle := mysqlClient(); oracle != nil {
		b.WriteString("ssl-mode=VERIFY_IDENTITY\nenable-cleartext-plugin\n")
	} else {
		b.WriteString("ssl-verify-server-cert\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

func dbLogout(c *cli.Context, cfg *config) error {
	gw := c.String("gateway")
	if gw == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		if err := os.RemoveAll(filepath.Join(dir, "rdsgate", "gateways")); err != nil {
			return err
		}
		fmt.Fprintln(cfg.stdout, "Forgot the identity tokens of every gateway. Your AWS credentials are the SDK's: aws sso logout ends those.")
		return nil
	}
	path, err := cacheFile(gw)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	fmt.Fprintf(cfg.stdout, "Forgot the identity token for %s.\n", gw)
	return nil
}

func accessCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "access",
		Usage: "explain who may reach what through a gateway",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "decide one request with the gateway's RBAC and say which rule decided",
			Description: "Exit 0 when allowed, 1 when denied. An assumed-role session ARN is matched as its role, as the\n" +
				"gateway does.\n" +
				"  rdsgate access check --config proxy.json --identity arn:aws:iam::123456789012:role/dev \\\n" +
				"    --db orders --db-user app --db-name orders",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"RDSGATE_PROXY_CONFIG"}, Usage: "the gateway's configuration `FILE` (databases and rbac_file)"},
				&cli.StringFlag{Name: "rbac", Usage: "RBAC `FILE` to use instead of the configuration's rbac_file"},
				&cli.StringFlag{Name: "identity", Usage: "an IAM ARN, or a certificate subject such as CN=alice"},
				&cli.StringFlag{Name: "db", Usage: "the database's name in the configuration"},
				&cli.StringFlag{Name: "db-user", Usage: "database user"},
				&cli.StringFlag{Name: "db-name", Usage: "database name"},
			},
			Action: func(c *cli.Context) error { return accessCheck(c, cfg) },
		}},
	}
}

func accessCheck(c *cli.Context, cfg *config) error {
	for _, f := range []string{"config", "identity", "db", "db-user", "db-name"} {
		if c.String(f) == "" {
			return usageError("--%s is required", f)
		}
	}
	pc, err := proxyd.LoadConfig(c.String("config"))
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	rbacFile := c.String("rbac")
	if rbacFile == "" {
		if pc.Gateway == nil {
			return usageError("%s has no gateway: give the RBAC file with --rbac", c.String("config"))
		}
		rbacFile = pc.Gateway.RBACFile
	}
	rbac, err := proxyd.LoadRBAC(rbacFile)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	db := pc.Database(c.String("db"))
	if db == nil {
		var names []string
		for _, d := range pc.Databases {
			names = append(names, d.Name)
		}
		return usageError("no database %q in %s; it has %s", c.String("db"), c.String("config"), strings.Join(names, ", "))
	}
	id, err := proxyd.ParseIdentity(c.String("identity"))
	if err != nil {
		return usageError("--identity %q: %v", c.String("identity"), err)
	}
	for _, w := range rbac.Review(pc) {
		fmt.Fprintf(cfg.stderr, "warning: %s\n", w)
	}
	d := rbac.Check(proxyd.AccessRequest{Identity: id, Database: db, DBUser: c.String("db-user"), DBName: c.String("db-name")})
	verdict := "denied"
	if d.Allowed {
		verdict = "allowed"
	}
	fmt.Fprintf(cfg.stdout, "%s: %s on %s as %q, database %q: %s\n", verdict, id, db.Name, c.String("db-user"), c.String("db-name"), d.Reason)
	if names := id.Names(); len(names) > 1 || names[0] != id.String() {
		fmt.Fprintf(cfg.stdout, "(matched as %s)\n", strings.Join(names, " and "))
	}
	if !d.Allowed {
		return &ExitError{Code: ExitFailure, Err: errors.New(verdict), Silent: true}
	}
	return nil
}
