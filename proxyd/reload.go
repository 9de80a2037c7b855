package proxyd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
)

// listenerOf returns a listener by database name or gateway-<protocol>.
func (s *Server) listenerOf(name string) net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listeners[name]
}

// Reload applies a new configuration to the running proxy, as SIGHUP asks:
// databases added, removed or changed (their listeners opened and closed),
// the RBAC file, the gateway's certificate and client CA, the CA bundle,
// limits and timeouts, and the audit trail, reopened (after logrotate) or
// moved. Open sessions go on as they started. What cannot change without a
// restart is named in the error, and then nothing changes. It returns what
// changed, for the log. The proxy keeps cfg: do not change it afterwards.
//
// In automatic mode the databases it found stay served beside the file's
// (a database the file names is the file's).
func (s *Server) Reload(cfg *Config) ([]string, error) {
	return s.reload(func(old *Config) *Config {
		if cfg.Auto != nil {
			for _, d := range old.Databases {
				if d.Discovered && cfg.Database(d.Name) == nil {
					cfg.Databases = append(cfg.Databases, d)
				}
			}
		}
		return cfg
	})
}

// serveDiscovered replaces the databases automatic mode serves, and
// nothing else: a database of the file keeps its name (a discovered one of
// the same name is left out).
func (s *Server) serveDiscovered(dbs []Database) ([]string, error) {
	return s.reload(func(old *Config) *Config {
		cfg := *old
		cfg.Databases = nil
		for _, d := range old.Databases {
			if !d.Discovered {
				cfg.Databases = append(cfg.Databases, d)
			}
		}
		for _, d := range dbs {
			if cfg.Database(d.Name) == nil {
				d.Discovered = true
				cfg.Databases = append(cfg.Databases, d)
			}
		}
		return &cfg
	})
}

// reload applies the configuration build makes from the one in force.
func (s *Server) reload(build func(old *Config) *Config) ([]string, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.config()
	cfg := build(old)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fixed := restartOnly(old, cfg); len(fixed) > 0 {
		return nil, fmt.Errorf("%w: %s changed, which needs a restart (systemctl restart rdsgate-proxy); nothing was reloaded",
			ErrConfig, strings.Join(fixed, ", "))
	}
	st, err := loadSettings(cfg, s.selfSigned)
	if err != nil {
		return nil, err
	}
	var changes []string
	// Listeners: open the new ones first, so a failure changes nothing.
	oldDB := map[string]*Database{}
	for i := range old.Databases {
		oldDB[old.Databases[i].Name] = &old.Databases[i]
	}
	opened := map[string]net.Listener{}
	var toClose []string
	keep := map[string]bool{}
	for i := range cfg.Databases {
		db := &cfg.Databases[i]
		prev := oldDB[db.Name]
		switch {
		case prev == nil:
			changes = append(changes, "added "+db.Name)
		case !sameJSON(prev, db):
			changes = append(changes, "changed "+db.Name)
		}
		if db.Listen == "" {
			continue
		}
		if prev != nil && prev.Listen == db.Listen && s.listenerOf(db.Name) != nil {
			keep[db.Name] = true
			continue
		}
		if prev != nil && prev.Listen != "" && s.listenerOf(db.Name) != nil {
			// A new address: the old listener closes below. A unix
			// socket path reused by another database is not supported.
			toClose = append(toClose, db.Name)
		}
		ln, err := s.listenOn(db.Listen)
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
			return nil, fmt.Errorf("database %s: listen on %s: %v; nothing was reloaded", db.Name, db.Listen, err)
		}
		opened[db.Name] = ln
	}
	for name := range oldDB {
		if cfg.Database(name) == nil {
			changes = append(changes, "removed "+name)
			if s.listenerOf(name) != nil {
				toClose = append(toClose, name)
			}
		}
	}
	if old.AuditLog != cfg.AuditLog {
		changes = append(changes, "audit_log "+cfg.AuditLog)
	}
	if err := s.audit.reopen(cfg.AuditLog); err != nil {
		for _, l := range opened {
			l.Close()
		}
		return nil, err
	}
	s.current.Store(st)
	s.signers.forget(func(name string) bool { return cfg.Database(name) != nil })
	s.mu.Lock()
	for _, name := range toClose {
		if ln := s.listeners[name]; ln != nil {
			ln.Close()
			delete(s.listeners, name)
		}
	}
	for name, ln := range opened {
		s.listeners[name] = ln
	}
	s.mu.Unlock()
	for name, ln := range opened {
		s.serve(ln, name, cfg.Database(name).Protocol)
		changes = append(changes, "listening for "+name+" on "+ln.Addr().String())
	}
	if cfg.Gateway != nil {
		changes = append(changes, fmt.Sprintf("rbac %s: %s", cfg.Gateway.RBACFile, count(len(st.rbac.Rules), "rule")))
		for _, w := range st.rbac.Review(cfg) {
			s.log.Warn(w)
		}
	}
	sort.Strings(changes)
	return changes, nil
}

// restartOnly lists the settings that differ and that a running proxy
// cannot change: its health and gateway listeners, its identity (region,
// base role), the gateway's IAM audience and STS, its event loops.
func restartOnly(a, b *Config) []string {
	var out []string
	diff := func(name string, x, y any) {
		if !sameJSON(x, y) {
			out = append(out, name)
		}
	}
	diff("health_address", a.HealthAddress, b.HealthAddress)
	diff("region", a.Region, b.Region)
	diff("assume_role_arn", a.AssumeRoleARN, b.AssumeRoleARN)
	diff("external_id", a.ExternalID, b.ExternalID)
	diff("no_event_loop", a.NoEventLoop, b.NoEventLoop)
	diff("event_loops", a.EventLoops, b.EventLoops)
	diff("pprof", a.Pprof, b.Pprof)
	diff("log_level", a.LogLevel, b.LogLevel)
	if (a.Auto == nil) != (b.Auto == nil) {
		out = append(out, "auto")
	}
	if (a.Gateway == nil) != (b.Gateway == nil) {
		return append(out, "gateway")
	}
	if a.Gateway != nil {
		diff("gateway.listen_postgres", a.Gateway.ListenPostgres, b.Gateway.ListenPostgres)
		diff("gateway.listen_mysql", a.Gateway.ListenMySQL, b.Gateway.ListenMySQL)
		diff("gateway.listen_api", a.Gateway.ListenAPI, b.Gateway.ListenAPI)
		diff("gateway.iam", a.Gateway.IAM, b.Gateway.IAM)
	}
	return out
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// listenOn listens on host:port or unix:/path; a socket gets the
// configured mode and group.
func (s *Server) listenOn(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s exists and is not a socket; rdsgate will not remove it", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	cfg := s.config()
	mode, _ := strconv.ParseUint(cfg.SocketMode, 8, 32)
	if err := os.Chmod(path, os.FileMode(mode)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket_mode on %s: %v", path, err)
	}
	if cfg.SocketGroup != "" {
		g, err := user.LookupGroup(cfg.SocketGroup)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket_group %q: %v", cfg.SocketGroup, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket_group %q on %s: %v (the proxy's user must be a member of the group)", cfg.SocketGroup, path, err)
		}
	}
	return ln, nil
}
