// Package proxyconf turns rdsgate's plans into the proxy's configuration
// and deployment files: the one place the command line and the Terraform
// provider share, so both write the same files.
package proxyconf

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// Options shape a generated configuration.
type Options struct {
	CABundle      string
	Region        string
	HealthAddress string
	// ListenHost and FirstPort give sidecar listeners host:port, one port per
	// database; ListenHost "unix:<dir>" gives sockets instead. A port, once
	// given, never moves (clients would land on another database, perhaps of
	// another engine): Ports pins ports by database name, every database of
	// Previous keeps the port it had, and a new one takes the lowest free
	// port from FirstPort, in name order.
	ListenHost string
	FirstPort  int
	Ports      map[string]int
	Previous   *proxyd.Config
	// Taken are ports that other listeners hold (a configuration's own
	// databases beside discovered ones), by port: the holder's name.
	Taken map[int]string
	// DBUsers limits the users of every database (default: the inventory's).
	DBUsers []string
	// Addresses are where to connect instead of a database's endpoint, by
	// name (a tunnel or a local port); tokens and TLS still name the endpoint.
	Addresses map[string]string
	// AssumeRoleARN is the role the proxy assumes first, for a proxy that
	// does not run as its role (a laptop, a CI job).
	AssumeRoleARN string
}

// FromPlan makes a sidecar configuration for every database of a plan: each
// reaches its database as the principal the plan put its permission on
// (the base role, or a shard role by role chaining).
func FromPlan(plan *policies.Plan, inv *policies.Inventory, o Options) (*proxyd.Config, error) {
	byName := map[string]policies.Database{}
	for _, db := range inv.Databases {
		byName[db.Name] = db
	}
	principals := map[string]policies.PlanPrincipal{}
	for _, pp := range plan.Principals {
		principals[pp.Name] = pp
	}
	sub := &policies.Inventory{}
	roles := map[string]string{}
	for _, d := range plan.Databases {
		db, ok := byName[d.Name]
		if !ok {
			return nil, fmt.Errorf("%w: database %s is in the plan but not in the inventory: use the inventory the plan was made from", policies.ErrInvalidInput, d.Name)
		}
		sub.Databases = append(sub.Databases, db)
		if pp, ok := principals[d.Principal]; ok && pp.Shard {
			roles[d.Name] = pp.ARN
		}
	}
	// Redshift is not planned (no rds-db:connect): served as the proxy's
	// own principal, which print-iam lets ask for credentials.
	for _, db := range inv.Databases {
		if db.Engine.Redshift() {
			sub.Databases = append(sub.Databases, db)
		}
	}
	return FromInventory(sub, roles, plan.Settings.ExternalID, o)
}

// FromInventory makes a sidecar configuration for databases, each reached
// through the role roles names for it (none: the proxy's own principal).
func FromInventory(inv *policies.Inventory, roles map[string]string, externalID string, o Options) (*proxyd.Config, error) {
	if o.ListenHost == "" {
		o.ListenHost = "127.0.0.1"
	}
	if o.FirstPort == 0 {
		o.FirstPort = 15432
	}
	dbs := slices.Clone(inv.Databases)
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].Name < dbs[j].Name })
	names := make([]string, len(dbs))
	for i, db := range dbs {
		names[i] = db.Name
	}
	previous := map[string]int{}
	if o.Previous != nil {
		for _, d := range o.Previous.Databases {
			if port := ListenPort(d.Listen); port != 0 {
				previous[d.Name] = port
			}
		}
	}
	ports, err := assignPorts(names, o.FirstPort, o.Ports, previous, o.Taken)
	if err != nil {
		return nil, err
	}
	cfg := &proxyd.Config{Region: o.Region, CABundle: o.CABundle, HealthAddress: o.HealthAddress, AssumeRoleARN: o.AssumeRoleARN}
	for _, db := range dbs {
		name := db.Name
		if db.Endpoint == "" || db.Port == 0 {
			return nil, fmt.Errorf("%w: database %s has no endpoint and port in the inventory (rdsgate discover fills them in)", policies.ErrInvalidInput, name)
		}
		entry := proxyd.Database{
			Name:     name,
			Protocol: db.Engine.Protocol(),
			Endpoint: net.JoinHostPort(db.Endpoint, strconv.Itoa(db.Port)),
			Region:   db.Region,
			DBUsers:  db.DBUsers,
			Labels:   db.Labels,
		}
		switch db.Engine {
		case policies.EngineRedshift:
			entry.Service, entry.Cluster = proxyd.ServiceRedshift, db.Identifier
		case policies.EngineRedshiftServerless:
			entry.Service, entry.Workgroup = proxyd.ServiceRedshiftServerless, db.Identifier
		}
		if len(o.DBUsers) > 0 {
			entry.DBUsers = o.DBUsers
		}
		if len(entry.DBUsers) == 1 && entry.DBUsers[0] == "*" {
			entry.DBUsers = nil
		}
		entry.Address = o.Addresses[name]
		if arn := roles[name]; arn != "" {
			entry.AssumeRoleARN = arn
			entry.ExternalID = externalID
		}
		if dir, ok := strings.CutPrefix(o.ListenHost, "unix:"); ok {
			// Where clients look: libpq and pgx at <dir>/.s.PGSQL.<port>
			// (host=<dir> port=<port>); mysql wherever --socket says.
			entry.Listen = "unix:" + proxyd.SocketPath(strings.TrimSuffix(dir, "/"), entry.Protocol, name, ports[name])
		} else {
			entry.Listen = net.JoinHostPort(o.ListenHost, strconv.Itoa(ports[name]))
		}
		cfg.Databases = append(cfg.Databases, entry)
	}
	if cfg.Region == "" && len(cfg.Databases) > 0 {
		cfg.Region = cfg.Databases[0].Region
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// AssignPorts gives each database (names, sorted) its listener port: its
// pin, else the port previous gave it, else the lowest port from first that
// no other database holds. Two databases asking for one port is an error
// that names both and what to change; nothing is moved to resolve it.
func AssignPorts(names []string, first int, pins, previous map[string]int) (map[string]int, error) {
	return assignPorts(names, first, pins, previous, nil)
}

// assignPorts is AssignPorts with ports that listeners outside names hold.
func assignPorts(names []string, first int, pins, previous map[string]int, taken map[int]string) (map[string]int, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", policies.ErrInvalidInput, fmt.Sprintf(format, args...))
	}
	ports, owner := map[string]int{}, maps.Clone(taken)
	if owner == nil {
		owner = map[int]string{}
	}
	for _, name := range slices.Sorted(maps.Keys(pins)) {
		port := pins[name]
		switch {
		case !slices.Contains(names, name):
			return nil, bad("a port is pinned for %s, which is not one of the databases: remove the pin", name)
		case port < 1 || port > 65535:
			return nil, bad("the port pinned for %s, %d, is not a TCP port (1-65535)", name, port)
		case owner[port] != "":
			return nil, bad("port %d is pinned for both %s and %s: give one of them another port", port, owner[port], name)
		}
		ports[name], owner[port] = port, name
	}
	for _, name := range slices.Sorted(maps.Keys(previous)) {
		port := previous[name]
		if port == 0 || !slices.Contains(names, name) {
			continue
		}
		if _, pinned := pins[name]; pinned {
			continue
		}
		if other := owner[port]; other != "" {
			return nil, bad("port %d is pinned for %s, but %s listens on it already: clients of %s would reach %s. Pin %s to another port, "+
				"or pin %s elsewhere first if moving it is meant", port, other, name, name, other, other, name)
		}
		ports[name], owner[port] = port, name
	}
	next := first
	for _, name := range names {
		if _, ok := ports[name]; ok {
			continue
		}
		for owner[next] != "" {
			next++
		}
		if next > 65535 {
			return nil, bad("no free port from %d for %s: lower the first port, or pin ports", first, name)
		}
		ports[name], owner[next] = next, name
	}
	return ports, nil
}

// ListenPort is the port of a listener address: host:port, or a PostgreSQL
// socket's .s.PGSQL.<port>; 0 when it names none (a MySQL socket).
func ListenPort(listen string) int {
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		_, port, found := strings.Cut(filepath.Base(path), ".s.PGSQL.")
		if !found {
			return 0
		}
		n, _ := strconv.Atoi(port)
		return n
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// Merge adds or replaces databases (by name) in a configuration.
func Merge(cfg *proxyd.Config, dbs ...proxyd.Database) {
	for _, d := range dbs {
		if existing := cfg.Database(d.Name); existing != nil {
			*existing = d
			continue
		}
		cfg.Databases = append(cfg.Databases, d)
	}
	sort.Slice(cfg.Databases, func(i, j int) bool { return cfg.Databases[i].Name < cfg.Databases[j].Name })
}

// JSON writes a configuration as the proxy reads it.
func JSON(cfg *proxyd.Config) ([]byte, error) {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// SystemdUnit is a hardened unit that runs the proxy with the configuration
// installed at configPath. Stopping sends SIGTERM, which drains; systemd
// waits the drain limit and a little more before it kills. `systemctl
// reload` sends SIGHUP, which reloads the configuration and reopens the
// audit log. It runs as the rdsgate system user (Sysusers creates it); the
// sandbox leaves writable only /run/rdsgate (sockets), /var/log/rdsgate and
// the directories of the audit log and of Unix sockets the configuration
// names.
func SystemdUnit(binary, configPath string, cfg *proxyd.Config) string {
	drain := time.Duration(cfg.DrainTimeout)
	if drain == 0 {
		drain = proxyd.DefaultDrainTimeout
	}
	var writable []string
	add := func(dir string) {
		if dir == "" || dir == "/run/rdsgate" || dir == "/var/log/rdsgate" || slices.Contains(writable, dir) {
			return
		}
		writable = append(writable, dir)
	}
	if cfg.AuditLog != "" && cfg.AuditLog != "-" {
		add(filepath.Dir(cfg.AuditLog))
	}
	for _, d := range cfg.Databases {
		if path, ok := strings.CutPrefix(d.Listen, "unix:"); ok {
			add(filepath.Dir(path))
		}
	}
	rw := ""
	if len(writable) > 0 {
		sort.Strings(writable)
		rw = "ReadWritePaths=" + strings.Join(writable, " ") + "\n"
	}
	return fmt.Sprintf(`[Unit]
Description=rdsgate proxy: IAM-authenticated access to RDS and Aurora
Documentation=https://github.com/rdsgate/rdsgate
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=%s proxy start --config %s
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=%d
User=rdsgate
Group=rdsgate
RuntimeDirectory=rdsgate
RuntimeDirectoryMode=0755
LogsDirectory=rdsgate
%sNoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=true
LockPersonality=true
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`, binary, configPath, int((drain + 5*time.Second).Seconds()), rw)
}

// Sysusers is the systemd-sysusers(8) line that creates the unit's system
// user and group: install it as /usr/lib/sysusers.d/rdsgate.conf and run
// systemd-sysusers (package managers do this for their own units).
const Sysusers = "u rdsgate - \"rdsgate proxy\" /nonexistent /usr/sbin/nologin\n"

// InstallCommands are the shell commands that install a configuration
// written at written (and the files it names that sit beside it), the unit
// and the sysusers file, then start the proxy.
func InstallCommands(written, installed, unit, users string, cfg *proxyd.Config) string {
	var b strings.Builder
	dir := filepath.Dir(installed)
	fmt.Fprintf(&b, "  sudo install -d -m 0755 %s\n", dir)
	fmt.Fprintf(&b, "  sudo install -m 0644 %s %s\n", written, installed)
	fmt.Fprintf(&b, "  sudo install -m 0644 %s /usr/lib/sysusers.d/rdsgate.conf && sudo systemd-sysusers\n", users)
	fmt.Fprintf(&b, "  sudo install -m 0644 %s /etc/systemd/system/rdsgate-proxy.service\n", unit)
	if cfg.CABundle != "" {
		fmt.Fprintf(&b, "  sudo rdsgate proxy ca-bundle --output %s   # the RDS CA bundle, from %s\n", cfg.CABundle, proxyd.RDSCABundleURL)
	}
	if g := cfg.Gateway; g != nil {
		fmt.Fprintf(&b, "  # the gateway's files: %s (readable by the rdsgate user: sudo chgrp rdsgate FILE && sudo chmod 0640 FILE)\n",
			strings.Join(slices.DeleteFunc([]string{g.TLSCert, g.TLSKey, g.ClientCA, g.RBACFile}, func(s string) bool { return s == "" }), ", "))
	}
	b.WriteString("  sudo systemctl daemon-reload && sudo systemctl enable --now rdsgate-proxy\n")
	return b.String()
}

// CloudInit is cloud-init user data that installs the proxy on a fresh
// instance (a launch template's user data): a system user, the binary from
// binaryURL, the configuration, any other files it names (the RBAC file),
// and the unit, then starts it. None of it is secret (credentials come from
// the instance role).
func CloudInit(binaryURL, binary, configPath string, configJSON []byte, unit string, files map[string]string) string {
	indent := func(s string) string {
		return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#cloud-config\nusers:\n  - name: rdsgate\n    system: true\n    shell: /usr/sbin/nologin\nwrite_files:\n")
	write := func(path, content string) {
		fmt.Fprintf(&b, "  - path: %s\n    permissions: \"0644\"\n    content: |\n%s\n", path, indent(content))
	}
	write(configPath, string(configJSON))
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		write(p, files[p])
	}
	write("/etc/systemd/system/rdsgate-proxy.service", unit)
	fmt.Fprintf(&b, "runcmd:\n  - [curl, -fsSL, -o, %s, %q]\n  - [chmod, \"0755\", %s]\n  - [systemctl, daemon-reload]\n  - [systemctl, enable, --now, rdsgate-proxy.service]\n",
		binary, binaryURL, binary)
	return b.String()
}
