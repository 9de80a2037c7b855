package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/autoproxy"
	"github.com/rdsgate/rdsgate/internal/proxyconf"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

func proxyCommand(cfg *config) *cli.Command {
	return &cli.Command{
		Name:  "proxy",
		Usage: "run the rdsgate proxy, or write its configuration",
		Subcommands: []*cli.Command{
			{
				Name:  "ca-bundle",
				Usage: "fetch the RDS CA bundle that verifies the databases' certificates",
				Description: "Downloads " + proxyd.RDSCABundleURL + " (or --url: GovCloud and China regions\n" +
					"have their own bundles) to --output, after checking that every PEM block is a CA certificate (and, with\n" +
					"--sha256, the digest). A bundle younger than --max-age is kept without asking; an older one is\n" +
					"revalidated (If-Modified-Since). A failed fetch leaves the file as it was. Run it from cron or a\n" +
					"systemd timer, then systemctl reload rdsgate-proxy to load a new bundle.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "/etc/rdsgate/global-bundle.pem", Usage: "where to keep the bundle (the configuration's ca_bundle)"},
					&cli.StringFlag{Name: "url", Value: proxyd.RDSCABundleURL, Usage: "where to fetch it (https)"},
					&cli.DurationFlag{Name: "max-age", Value: 24 * time.Hour, Usage: "keep a bundle younger than this without asking (0: always ask)"},
					&cli.StringFlag{Name: "sha256", Usage: "refuse a bundle whose SHA-256 is not this `HEX` digest"},
				},
				Action: func(c *cli.Context) error { return proxyCABundle(c, cfg) },
			},
			{
				Name:  "start",
				Usage: "run the proxy with a configuration file",
				Description: "Serves until SIGTERM or SIGINT: the first stops accepting, waits for open connections up to\n" +
					"drain_timeout and exits 0; a second ends at once. SIGHUP reloads the configuration (databases,\n" +
					"listeners, RBAC, certificates) and reopens the audit log, keeping sessions. Logs are JSON on\n" +
					"standard error and never contain a token or a key.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"RDSGATE_PROXY_CONFIG"}, Usage: "configuration `FILE` (rdsgate proxy configure writes one)"},
				},
				Action: func(c *cli.Context) error { return proxyStart(c, cfg) },
			},
			{
				Name:  "configure",
				Usage: "write the proxy's configuration (and a systemd unit)",
				Description: "Writes a configuration for one database (--merge adds it to an existing file):\n" +
					"  rdsgate proxy configure --name orders --protocol postgres --uri orders.abc.us-east-1.rds.amazonaws.com:5432 \\\n" +
					"    --region us-east-1 --db-user app --output /etc/rdsgate/proxy.json --systemd\n" +
					"or writes one for every database of a shard plan, each reached through the role the plan\n" +
					"put its permission on:\n" +
					"  rdsgate proxy configure --plan plan.json --inventory inventory.json --output proxy.json",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "the database's name, as clients and logs use it"},
					&cli.StringFlag{Name: "protocol", Usage: "postgres or mysql"},
					&cli.StringFlag{Name: "uri", Usage: "the database endpoint, host:port"},
					&cli.StringFlag{Name: "region", EnvVars: []string{"RDSGATE_REGION"}, Usage: "AWS region of the database"},
					&cli.StringFlag{Name: "assume-role-arn", Usage: "role that holds the database's rds-db:connect permission"},
					&cli.StringFlag{Name: "external-id", Usage: "external id for --assume-role-arn"},
					&cli.StringSliceFlag{Name: "db-user", Usage: "database user clients may connect as (repeat; default any)"},
					&cli.StringFlag{Name: "listen", Usage: "where clients connect: host:port or unix:/path (default 127.0.0.1 and the next free port from 15432)"},
					&cli.StringFlag{Name: "plan", Usage: "configure every database of this shard plan `FILE`"},
					&cli.StringFlag{Name: "inventory", Usage: "the inventory `FILE` the plan was made from (endpoints and ports)"},
					&cli.StringFlag{Name: "listen-host", Value: "127.0.0.1", Usage: "with --plan: host of the listeners, or unix:/dir for sockets"},
					&cli.IntFlag{Name: "first-port", Value: 15432, Usage: "with --plan: ports for new databases are the free ones from this, in name order (a database in --output keeps its port)"},
					&cli.StringSliceFlag{Name: "port", Usage: "with --plan: pin a database's listener port, `NAME=PORT` (repeat, or a,b)"},
					&cli.StringFlag{Name: "ca-bundle", Value: "/etc/rdsgate/global-bundle.pem", Usage: "PEM bundle that verifies the databases (the RDS CA bundle, https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)"},
					&cli.StringFlag{Name: "health-address", Value: "127.0.0.1:9187", Usage: "address of /startup, /readiness, /liveness and /metrics"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "configuration `FILE` to write (required)"},
					&cli.BoolFlag{Name: "gateway", Category: "gateway", Usage: "serve the databases as a gateway: one TLS listener per protocol, clients prove who they are, an RBAC file decides (the databases' own listeners are dropped: they would bypass it)"},
					&cli.StringFlag{Name: "tls-cert", Category: "gateway", Usage: "the gateway's certificate `FILE` (PEM), as clients will verify it"},
					&cli.StringFlag{Name: "tls-key", Category: "gateway", Usage: "its private key `FILE`"},
					&cli.StringFlag{Name: "client-ca", Category: "gateway", Usage: "PEM `FILE` that verifies client certificates (identities are their subjects)"},
					&cli.StringFlag{Name: "iam-audience", Category: "gateway", Usage: "let clients prove who they are with AWS IAM: this gateway's `NAME` in their identity tokens (prod-db-gateway)"},
					&cli.StringFlag{Name: "sts-endpoint", Category: "gateway", Usage: "STS endpoint that checks identity tokens (default https://sts.REGION.amazonaws.com)"},
					&cli.StringFlag{Name: "rbac-file", Category: "gateway", Value: "/etc/rdsgate/rbac.json", Usage: "the RBAC `FILE`: who may reach which database as which user"},
					&cli.StringFlag{Name: "gateway-postgres", Category: "gateway", Usage: "PostgreSQL listener `ADDR` (default :5432 when there is a PostgreSQL database)"},
					&cli.StringFlag{Name: "gateway-mysql", Category: "gateway", Usage: "MySQL listener `ADDR` (default :3306 when there is a MySQL database)"},
					&cli.StringFlag{Name: "gateway-api", Category: "gateway", Value: ":8443", Usage: "HTTPS API `ADDR` for rdsgate db ls/connect/env (\"\" for none)"},
					&cli.BoolFlag{Name: "auto", Category: "automatic mode", Usage: "write an automatic mode configuration: the proxy finds its databases, keeps its own connect shards in step and serves them"},
					&cli.StringFlag{Name: "base-role", Category: "automatic mode", Usage: "with --auto: the proxy's role `ARN`, whose connect shards it manages (it runs as that role: an instance profile, IRSA)"},
					&cli.StringSliceFlag{Name: "auto-regions", Category: "automatic mode", Usage: "with --auto: regions to discover in (default --region)"},
					&cli.StringSliceFlag{Name: "auto-types", Category: "automatic mode", Usage: "with --auto: rds, aurora, rds-proxy, redshift, redshift-serverless (default the first three)"},
					&cli.StringSliceFlag{Name: "auto-tag", Category: "automatic mode", Usage: "with --auto: only databases with this tag, key=value or key (repeat: all must match)"},
					&cli.DurationFlag{Name: "auto-interval", Category: "automatic mode", Value: proxyd.DefaultAutoInterval, Usage: "with --auto: time between discovery cycles"},
					&cli.BoolFlag{Name: "enable-iam-auth", Category: "automatic mode", Usage: "with --auto: turn IAM authentication on where it is off (modifies the databases)"},
					&cli.StringFlag{Name: "kubernetes", Category: "kubernetes", Usage: "also write a gateway fleet's manifests to `DIR` (Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler, ServiceAccount, ConfigMap), with the commands that apply them"},
					&cli.StringFlag{Name: "image", Category: "kubernetes", Usage: "container `IMAGE` that runs rdsgate"},
					&cli.StringFlag{Name: "namespace", Category: "kubernetes", Usage: "`NAMESPACE` of the objects (default: kubectl's)"},
					&cli.StringFlag{Name: "iam-role-arn", Category: "kubernetes", Usage: "the proxy's role `ARN`, for IAM roles for service accounts"},
					&cli.IntFlag{Name: "replicas", Category: "kubernetes", Value: 3, Usage: "pods the fleet keeps at least"},
					&cli.IntFlag{Name: "max-replicas", Category: "kubernetes", Value: 10, Usage: "pods the autoscaler may run at 70% CPU"},
					&cli.StringFlag{Name: "service-type", Category: "kubernetes", Value: "ClusterIP", Usage: "ClusterIP, or LoadBalancer (an NLB with pod targets)"},
					&cli.BoolFlag{Name: "merge", Usage: "add or update --name in an existing --output (its other databases, and its listener when it is there already, are kept)"},
					&cli.BoolFlag{Name: "systemd", Usage: "also write rdsgate-proxy.service and rdsgate.sysusers.conf next to the configuration, with the commands that install them"},
					&cli.StringFlag{Name: "install-config", Usage: "where the unit finds the configuration once installed (default /etc/rdsgate/ and the --output file's name)"},
					&cli.StringFlag{Name: "binary", Value: "/usr/local/bin/rdsgate", Usage: "path of rdsgate in the systemd unit"},
				},
				Action: func(c *cli.Context) error { return proxyConfigure(c, cfg) },
			},
		},
	}
}

func proxyStart(c *cli.Context, cfg *config) error {
	path := c.String("config")
	if path == "" {
		return usageError("--config is required: the proxy's configuration file (rdsgate proxy configure writes one)")
	}
	pc, err := proxyd.LoadConfig(path)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	logger := slog.New(slog.NewJSONHandler(cfg.stderr, &slog.HandlerOptions{Level: pc.Level()}))
	opts := []proxyd.Option{proxyd.WithLogger(logger)}
	if pc.Auto != nil {
		cycle, err := autoproxy.New(c.Context, pc, bootstrap.Config{})
		if err != nil {
			return err
		}
		opts = append(opts, proxyd.WithAutomatic(cycle.Run))
	}
	srv, err := proxyd.New(c.Context, pc, opts...)
	if err != nil {
		if errors.Is(err, proxyd.ErrConfig) {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(signals)
	first := <-signals
	for ; first == syscall.SIGHUP || first == syscall.SIGUSR1; first = <-signals {
		if first == syscall.SIGUSR1 {
			// Automatic mode: a cycle now rather than at the interval.
			srv.RunAutoCycle()
			continue
		}
		reload(srv, path, logger)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(pc.DrainTimeout))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-done:
		// Drained, or closed what was left at the limit: a clean stop.
		return nil
	case second := <-stopSignals(signals):
		logger.Warn("second signal: stopping at once", "signal", second.String(), "first", first.String())
		code := 130
		if second == syscall.SIGTERM {
			code = 143
		}
		return &ExitError{Code: code, Err: fmt.Errorf("stopped by a second %s", second), Silent: true}
	}
}

// reload applies the configuration file again (SIGHUP): the RBAC,
// databases and listeners, certificates, and a reopened audit trail
// (logrotate). Sessions go on; a bad file is logged and changes nothing.
func reload(srv *proxyd.Server, path string, logger *slog.Logger) {
	pc, err := proxyd.LoadConfig(path)
	if err == nil {
		var changes []string
		if changes, err = srv.Reload(pc); err == nil {
			logger.Info("configuration reloaded (SIGHUP)", "config", path, "changes", strings.Join(changes, "; "))
			return
		}
	}
	logger.Error("configuration not reloaded (SIGHUP); the proxy goes on with the one it had", "config", path, "error", err.Error())
}

// stopSignals passes on the signals that stop the proxy; a SIGHUP while it
// drains is ignored.
func stopSignals(in <-chan os.Signal) <-chan os.Signal {
	out := make(chan os.Signal, 1)
	go func() {
		for sig := range in {
			if sig != syscall.SIGHUP {
				out <- sig
				return
			}
		}
	}()
	return out
}

func proxyConfigure(c *cli.Context, cfg *config) error {
	out := c.String("output")
	if out == "" {
		return usageError("--output is required: the configuration file to write")
	}
	var pc *proxyd.Config
	gatewayOnly := c.Bool("gateway") && c.String("plan") == "" && c.String("name") == ""
	if !c.Bool("auto") {
		for _, f := range []string{"base-role", "auto-regions", "auto-types", "auto-tag", "auto-interval", "enable-iam-auth"} {
			if c.IsSet(f) {
				return usageError("--%s configures automatic mode: add --auto", f)
			}
		}
	}
	if !c.Bool("gateway") {
		for _, f := range []string{"tls-cert", "tls-key", "client-ca", "iam-audience", "sts-endpoint", "gateway-postgres", "gateway-mysql"} {
			if c.IsSet(f) {
				return usageError("--%s configures a gateway: add --gateway", f)
			}
		}
	}
	if c.Bool("auto") {
		var err error
		if pc, err = autoConfig(c, out); err != nil {
			return err
		}
	} else if gatewayOnly {
		// --gateway alone turns the databases of an existing file into
		// a gateway's.
		data, err := os.ReadFile(out)
		if err != nil {
			return usageError("--gateway without --plan or --name sets up the gateway of an existing --output, and %s cannot be read (%v): configure its databases first", out, err)
		}
		if !c.Bool("merge") {
			return usageError("%s exists: add --merge to make its databases a gateway's, or give --plan or --name", out)
		}
		if pc, err = proxyd.ParseConfig(data, out); err != nil {
			return usageError("%s is not a valid configuration (%v): fix it or write another file", out, err)
		}
	} else if planPath := c.String("plan"); planPath != "" {
		for _, f := range []string{"name", "protocol", "uri", "assume-role-arn", "listen"} {
			if c.IsSet(f) {
				return usageError("cannot specify --plan and --%s at the same time: with --plan every database comes from the plan", f)
			}
		}
		if c.String("inventory") == "" {
			return usageError("--plan needs --inventory, the file the plan was made from (for endpoints and ports)")
		}
		data, err := readInput(cfg, "plan", planPath)
		if err != nil {
			return err
		}
		plan, err := policies.ReadPlan(data, planPath)
		if err != nil {
			return err
		}
		invData, err := readInput(cfg, "inventory", c.String("inventory"))
		if err != nil {
			return err
		}
		inv, err := policies.ParseInventory(invData, c.String("inventory"))
		if err != nil {
			return err
		}
		pins, err := parsePorts(splitList(c.StringSlice("port")))
		if err != nil {
			return err
		}
		// The configuration being replaced is the one clients use: its
		// databases keep their ports.
		var previous *proxyd.Config
		if data, err := os.ReadFile(out); err == nil {
			if previous, err = proxyd.ParseConfig(data, out); err != nil {
				return usageError("%s exists but is not a valid configuration (%v): its ports are kept, so fix it, or move it away to assign ports afresh", out, err)
			}
		}
		if pc, err = proxyconf.FromPlan(plan, inv, proxyconf.Options{CABundle: c.String("ca-bundle"), HealthAddress: c.String("health-address"),
			ListenHost: c.String("listen-host"), FirstPort: c.Int("first-port"), DBUsers: splitList(c.StringSlice("db-user")), Ports: pins, Previous: previous}); err != nil {
			return usageError("%v", err)
		}
		if previous != nil {
			kept := 0
			for _, d := range pc.Databases {
				if p := previous.Database(d.Name); p != nil && proxyconf.ListenPort(p.Listen) != 0 && proxyconf.ListenPort(p.Listen) == proxyconf.ListenPort(d.Listen) {
					kept++
				}
			}
			fmt.Fprintf(cfg.stderr, "Kept the listener ports of %s from %s (a port never moves; --port NAME=PORT pins one).\n", policies.Count(kept, "database"), out)
		}
	} else {
		name, proto, uri, region := c.String("name"), c.String("protocol"), c.String("uri"), c.String("region")
		switch {
		case name == "" || proto == "" || uri == "":
			return usageError("give --name, --protocol and --uri (or --plan and --inventory)")
		case region == "":
			return usageError("--region is required: tokens are signed for the database's region")
		}
		if _, err := policies.PartitionOf(region); err != nil {
			return usageError("--region: %v", err)
		}
		if err := oneOf("protocol", proto, proxyd.ProtocolPostgres, proxyd.ProtocolMySQL); err != nil {
			return err
		}
		pc = &proxyd.Config{Region: region, CABundle: c.String("ca-bundle"), HealthAddress: c.String("health-address")}
		if data, err := os.ReadFile(out); err == nil {
			if pc, err = proxyd.ParseConfig(data, out); err != nil {
				return usageError("%s exists but is not a valid configuration (%v): fix it or write another file", out, err)
			}
			if !c.Bool("merge") {
				names := make([]string, len(pc.Databases))
				for i, d := range pc.Databases {
					names[i] = d.Name
				}
				return usageError("%s exists (%s: %s): add --merge to add or update %s in it, or name another --output", out,
					policies.Count(len(names), "database"), strings.Join(names, ", "), name)
			}
		}
		listen := c.String("listen")
		if existing := pc.Database(name); listen == "" && existing != nil {
			// A database that is there already keeps its listener: its
			// clients connect to it.
			listen = existing.Listen
		}
		if listen == "" {
			listen = nextListen(pc)
		}
		proxyconf.Merge(pc, proxyd.Database{Name: name, Protocol: proto, Endpoint: uri, Region: region, AssumeRoleARN: c.String("assume-role-arn"),
			ExternalID: c.String("external-id"), DBUsers: splitList(c.StringSlice("db-user")), Listen: listen})
		if err := pc.Validate(); err != nil {
			return usageError("%v", err)
		}
	}
	if c.Bool("gateway") {
		if err := configureGateway(c, pc); err != nil {
			return err
		}
	}
	// Manifests are worked out before anything is written: a refusal
	// leaves no half of the result behind.
	var kube *kubeManifests
	if dir := c.String("kubernetes"); dir != "" {
		var err error
		if kube, err = kubernetesManifests(c, dir, pc); err != nil {
			return err
		}
	} else {
		for _, f := range []string{"image", "namespace", "iam-role-arn", "replicas", "max-replicas", "service-type"} {
			if c.IsSet(f) {
				return usageError("--%s shapes the Kubernetes manifests: add --kubernetes DIR", f)
			}
		}
	}
	data, err := proxyconf.JSON(pc)
	if err != nil {
		return err
	}
	if err := writeOutput(out, data); err != nil {
		return err
	}
	if a := pc.Auto; a != nil {
		regions := a.Regions
		if len(regions) == 0 {
			regions = []string{pc.Region}
		}
		fmt.Fprintf(cfg.stdout, "Wrote %s: automatic mode for %s in %s, every %s; listeners from %s:%d.\n", out, a.BaseRole, strings.Join(regions, ", "),
			time.Duration(a.Interval), a.ListenHost, a.FirstPort)
	} else {
		fmt.Fprintf(cfg.stdout, "Wrote %s: %s.\n", out, policies.Count(len(pc.Databases), "database"))
	}
	for _, d := range pc.Databases {
		via := "the proxy's own credentials"
		if d.AssumeRoleARN != "" {
			via = d.AssumeRoleARN
		}
		listen := d.Listen
		if listen == "" {
			listen = "gateway"
		}
		fmt.Fprintf(cfg.stdout, "  %-24s %-8s %s -> %s (as %s)\n", d.Name, d.Protocol, listen, d.Endpoint, via)
	}
	if c.Bool("systemd") {
		// The unit runs the configuration where it is installed, not where
		// it was written (often a home directory or /tmp, which the unit's
		// sandbox hides).
		installed := c.String("install-config")
		if installed == "" {
			installed = filepath.Join("/etc/rdsgate", filepath.Base(out))
		}
		if !filepath.IsAbs(installed) {
			return usageError("--install-config %q must be an absolute path: where the configuration is installed", installed)
		}
		dir := filepath.Dir(out)
		unit, users := filepath.Join(dir, "rdsgate-proxy.service"), filepath.Join(dir, "rdsgate.sysusers.conf")
		if err := writeOutput(unit, []byte(proxyconf.SystemdUnit(c.String("binary"), installed, pc))); err != nil {
			return err
		}
		if err := writeOutput(users, []byte(proxyconf.Sysusers)); err != nil {
			return err
		}
		fmt.Fprintf(cfg.stdout, "Wrote %s and %s (the rdsgate system user). Install them with\n%s", unit, users, proxyconf.InstallCommands(out, installed, unit, users, pc))
	}
	if kube != nil {
		if err := kube.write(cfg, pc); err != nil {
			return err
		}
	}
	if g := pc.Gateway; g != nil {
		fmt.Fprintf(cfg.stdout, "Gateway: %s\n", strings.Join(slices.DeleteFunc([]string{
			listenerLine("PostgreSQL", g.ListenPostgres), listenerLine("MySQL", g.ListenMySQL), listenerLine("API", g.ListenAPI)}, func(s string) bool { return s == "" }), ", "))
		if _, err := os.Stat(g.RBACFile); err != nil {
			fmt.Fprintf(cfg.stdout, "Write the RBAC file %s before starting: deny by default, for example\n  %s\n", g.RBACFile,
				`{"rules": [{"name": "engineers", "identities": ["arn:aws:iam::123456789012:role/engineers"], "databases": ["*"], "db_users": ["app"], "db_names": ["*"]}]}`)
		}
		fmt.Fprintf(cfg.stdout, "Test a rule with: rdsgate access check --config %s --identity ARN --db NAME --db-user USER\n", out)
	}
	fmt.Fprintf(cfg.stdout, "Start the proxy with: rdsgate proxy start --config %s\n", out)
	return nil
}

// autoConfig is the configuration of --auto: no databases of its own, an
// auto section from the flags.
func autoConfig(c *cli.Context, out string) (*proxyd.Config, error) {
	for _, f := range []string{"name", "protocol", "uri", "plan", "inventory", "merge"} {
		if c.IsSet(f) {
			return nil, usageError("cannot specify --auto and --%s at the same time: automatic mode finds the databases itself", f)
		}
	}
	if _, err := os.Stat(out); err == nil {
		return nil, usageError("%s exists: automatic mode writes a whole configuration; name another --output or move it away", out)
	}
	base := c.String("base-role")
	if n, err := policies.ParseIAMARN(base); err != nil || n.Type != string(policies.PrincipalRole) {
		return nil, usageError("--auto needs --base-role ARN, the proxy's role (arn:aws:iam::123456789012:role/rdsgate-proxy): its connect shards are what automatic mode manages")
	}
	region := c.String("region")
	regions := splitList(c.StringSlice("auto-regions"))
	if region == "" && len(regions) > 0 {
		region = regions[0]
	}
	if region == "" {
		return nil, usageError("--region (or --auto-regions) is required: where to discover and sign")
	}
	tags, err := tagFilters(c, "auto-tag")
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		tags = nil
	}
	pc := &proxyd.Config{Region: region, CABundle: c.String("ca-bundle"), HealthAddress: c.String("health-address"), Databases: []proxyd.Database{},
		Auto: &proxyd.Auto{Interval: proxyd.Duration(c.Duration("auto-interval")), Regions: regions, Types: splitList(c.StringSlice("auto-types")),
			Tags: tags, DBUsers: splitList(c.StringSlice("db-user")), EnableIAMAuth: c.Bool("enable-iam-auth"), BaseRole: base,
			ListenHost: c.String("listen-host"), FirstPort: c.Int("first-port")}}
	if err := pc.Validate(); err != nil {
		return nil, usageError("%v", err)
	}
	return pc, nil
}

// kubeManifests are a gateway fleet's manifests, to be written to dir.
type kubeManifests struct {
	dir   string
	o     proxyconf.KubeOptions
	files map[string][]byte
}

// kubernetesManifests works out the manifests of --kubernetes.
func kubernetesManifests(c *cli.Context, dir string, pc *proxyd.Config) (*kubeManifests, error) {
	o := proxyconf.KubeOptions{Name: "rdsgate-proxy", Namespace: c.String("namespace"), Image: c.String("image"), IAMRoleARN: c.String("iam-role-arn"),
		Replicas: c.Int("replicas"), MaxReplicas: c.Int("max-replicas"), ServiceType: c.String("service-type")}
	if o.IAMRoleARN != "" {
		if n, err := policies.ParseIAMARN(o.IAMRoleARN); err != nil || n.Type != string(policies.PrincipalRole) {
			return nil, usageError("--iam-role-arn %q is not a role ARN (arn:aws:iam::123456789012:role/rdsgate-proxy)", o.IAMRoleARN)
		}
	}
	if pc.Gateway != nil {
		if data, err := os.ReadFile(pc.Gateway.RBACFile); err == nil {
			o.RBAC = data
		}
	}
	files, _, err := proxyconf.Kubernetes(pc, o)
	if err != nil {
		return nil, usageError("%v", err)
	}
	return &kubeManifests{dir: dir, o: o, files: files}, nil
}

// write writes the manifests and says how to apply them.
func (k *kubeManifests) write(cfg *config, pc *proxyd.Config) error {
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(k.files)) {
		if err := writeOutput(filepath.Join(k.dir, name), k.files[name]); err != nil {
			return err
		}
	}
	fmt.Fprintf(cfg.stdout, "Wrote %s to %s. Create the CA bundle and certificates they mount, then apply them:\n%s",
		policies.Count(len(k.files), "Kubernetes manifest"), k.dir, proxyconf.KubeInstructions(k.dir, pc, k.o))
	if len(k.o.RBAC) == 0 {
		fmt.Fprintf(cfg.stdout, "The ConfigMap's rbac.json denies everyone: write the rules in it (kubectl edit configmap %s).\n", k.o.Name)
	}
	return nil
}

func listenerLine(what, addr string) string {
	if addr == "" {
		return ""
	}
	return what + " on " + addr
}

// configureGateway sets the gateway of a configuration from the flags.
func configureGateway(c *cli.Context, pc *proxyd.Config) error {
	g := &proxyd.Gateway{ListenPostgres: c.String("gateway-postgres"), ListenMySQL: c.String("gateway-mysql"), ListenAPI: c.String("gateway-api"),
		TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), ClientCA: c.String("client-ca"), RBACFile: c.String("rbac-file")}
	if g.TLSCert == "" || g.TLSKey == "" {
		return usageError("--gateway needs --tls-cert and --tls-key: the certificate clients verify the gateway with, and its key")
	}
	if g.ClientCA == "" && c.String("iam-audience") == "" {
		return usageError("--gateway needs a way for clients to prove who they are: --iam-audience NAME (their AWS identity), --client-ca FILE (client certificates), or both")
	}
	if a := c.String("iam-audience"); a != "" {
		g.IAM = &proxyd.IAMAuth{Audience: a, STSEndpoint: c.String("sts-endpoint")}
	} else if c.IsSet("sts-endpoint") {
		return usageError("--sts-endpoint checks IAM identity tokens: add --iam-audience")
	}
	for i := range pc.Databases {
		d := &pc.Databases[i]
		// A database's own listener would let whoever reaches it past
		// the RBAC: a gateway serves every database on its listeners.
		d.Listen = ""
		switch {
		case d.Protocol == proxyd.ProtocolPostgres && g.ListenPostgres == "" && !c.IsSet("gateway-postgres"):
			g.ListenPostgres = ":5432"
		case d.Protocol == proxyd.ProtocolMySQL && g.ListenMySQL == "" && !c.IsSet("gateway-mysql"):
			g.ListenMySQL = ":3306"
		}
	}
	pc.Gateway = g
	if pc.MaxPendingLoginsPerSource == pc.MaxPendingLogins {
		// A sidecar's default (its clients are its own application);
		// a gateway faces strangers and takes the gateway default.
		pc.MaxPendingLoginsPerSource = 0
	}
	if err := pc.Validate(); err != nil {
		return usageError("%v", err)
	}
	return nil
}

func proxyCABundle(c *cli.Context, cfg *config) error {
	if c.Args().Len() > 0 {
		return usageError("proxy ca-bundle takes no arguments (found %q): --output names the file", c.Args().First())
	}
	u := c.String("url")
	if !strings.HasPrefix(u, "https://") {
		return usageError("--url %q must be an https URL: the bundle is what verifies every database, so it is fetched only over verified TLS", u)
	}
	if s := c.String("sha256"); s != "" && !regexp.MustCompile(`^[0-9a-fA-F]{64}$`).MatchString(s) {
		return usageError("--sha256 %q must be 64 hex digits (sha256sum prints them)", s)
	}
	out := c.String("output")
	res, err := proxyd.FetchCABundle(c.Context, proxyd.CABundleFetch{URL: u, Path: out, MaxAge: c.Duration("max-age"), SHA256: c.String("sha256")})
	if err != nil {
		return err
	}
	switch res.Status {
	case "downloaded":
		fmt.Fprintf(cfg.stdout, "Wrote %s: %s from %s (sha256 %s).\n", out, policies.Count(res.Certificates, "CA certificate"), u, res.SHA256)
	case "unchanged":
		fmt.Fprintf(cfg.stdout, "%s is current (%s says it has not changed): %s.\n", out, u, policies.Count(res.Certificates, "CA certificate"))
	default:
		fmt.Fprintf(cfg.stdout, "%s is younger than --max-age %s; kept without asking: %s.\n", out, c.Duration("max-age"), policies.Count(res.Certificates, "CA certificate"))
	}
	return nil
}

// parsePorts reads --port NAME=PORT pins.
func parsePorts(list []string) (map[string]int, error) {
	pins := map[string]int{}
	for _, p := range list {
		name, port, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(port)
		if !ok || name == "" || err != nil {
			return nil, usageError("--port %q: write NAME=PORT, for example --port orders=15432", p)
		}
		if _, dup := pins[name]; dup {
			return nil, usageError("--port pins %s twice", name)
		}
		pins[name] = n
	}
	return pins, nil
}

// nextListen picks a loopback port no database of the configuration uses.
func nextListen(pc *proxyd.Config) string {
	used := map[int]bool{}
	for _, d := range pc.Databases {
		if _, port, err := net.SplitHostPort(d.Listen); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				used[p] = true
			}
		}
	}
	p := 15432
	for used[p] {
		p++
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}
