package proxyd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is a running proxy.
type Server struct {
	current    atomic.Pointer[settings] // what SIGHUP (Reload) replaces
	reloadMu   sync.Mutex
	selfSigned tls.Certificate // sidecar TLS without client_tls_cert, made at start
	log        *slog.Logger
	metrics    *metrics
	creds      *credentials
	base       roleRef
	identities *identityVerifier // gateway IAM identity, or nil
	audit      *auditLog
	awsConfig  *aws.Config

	listeners map[string]net.Listener // by database name, or gateway-postgres/gateway-mysql
	health    *http.Server
	api       *http.Server // the gateway's HTTPS API
	apiLn     net.Listener
	healthLn  net.Listener

	mu          sync.Mutex
	conns       map[*session]struct{}
	active      atomic.Int64 // open client connections
	established atomic.Int64 // logged-in sessions, bounded by max_connections
	pending     pendingLogins
	junk        rateLimitedLog // lines unauthenticated clients can cause
	stopping    atomic.Bool
	started     atomic.Bool
	wg          sync.WaitGroup
	nextID      atomic.Uint32
	cancels     cancelRegistry
	mysqlIDs    mysqlIDs
	pool        connPool
	signers     signerChoice
	auto        *autoState
	autoCycle   AutoCycle
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger; every handler is wrapped so secrets are
// redacted.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.log = slog.New(NewRedactingHandler(l.Handler())) }
}

// WithAWSConfig replaces the SDK's default configuration (tests, and
// callers that hold credentials already).
func WithAWSConfig(cfg aws.Config) Option { return func(s *Server) { s.awsConfig = &cfg } }

// settings are what a configuration makes that Reload can replace while
// sessions go on: the configuration itself (databases, their users and
// roles), the RBAC, the gateway's certificate and client CA, and the CA
// bundle that verifies databases.
type settings struct {
	cfg        *Config
	rbac       *RBAC
	gatewayTLS *tls.Config
	sidecarTLS *tls.Config // TLS for sidecar clients that ask for it
	backendTLS *backendTLS // verifies databases against the CA bundle
}

func (s *Server) config() *Config            { return s.current.Load().cfg }
func (s *Server) rules() *RBAC               { return s.current.Load().rbac }
func (s *Server) tlsForClients() *tls.Config { return s.current.Load().gatewayTLS }
func (s *Server) databaseTLS() *backendTLS   { return s.current.Load().backendTLS }

// loadSettings reads the files a configuration names; selfSigned is what
// sidecar listeners answer TLS with when no client_tls_cert is set.
func loadSettings(cfg *Config, selfSigned tls.Certificate) (*settings, error) {
	st := &settings{cfg: cfg}
	st.sidecarTLS = &tls.Config{Certificates: []tls.Certificate{selfSigned}, MinVersion: tls.VersionTLS12}
	if cfg.ClientTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientTLSCert, cfg.ClientTLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: client_tls_cert/client_tls_key: %v", ErrConfig, err)
		}
		st.sidecarTLS.Certificates = []tls.Certificate{cert}
	}
	pem, err := os.ReadFile(cfg.CABundle)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: ca_bundle %s does not exist: %s", ErrConfig, cfg.CABundle, caBundleHint(cfg.CABundle))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ca_bundle: %v", ErrConfig, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: ca_bundle %s holds no PEM certificates: %s", ErrConfig, cfg.CABundle, caBundleHint(cfg.CABundle))
	}
	st.backendTLS = newBackendTLS(roots)
	if g := cfg.Gateway; g != nil {
		if st.gatewayTLS, err = gatewayTLSConfig(g); err != nil {
			return nil, err
		}
		if st.rbac, err = LoadRBAC(g.RBACFile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// New prepares a proxy from a validated configuration.
func New(ctx context.Context, cfg *Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	s := &Server{metrics: newMetrics(), listeners: map[string]net.Listener{}, conns: map[*session]struct{}{},
		base: roleRef{cfg.AssumeRoleARN, cfg.ExternalID}}
	s.auto = newAutoState(s.metrics.registry)
	s.log = slog.New(NewRedactingHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Level()})))
	for _, o := range opts {
		o(s)
	}
	if s.selfSigned, err = selfSignedCert(cfg); err != nil {
		return nil, err
	}
	st, err := loadSettings(cfg, s.selfSigned)
	if err != nil {
		return nil, err
	}
	s.current.Store(st)
	if cfg.ClientTLSCert == "" && sidecarOnTCP(cfg) {
		sum := sha256.Sum256(s.selfSigned.Certificate[0])
		s.log.Info("sidecar listeners answer TLS with a certificate made at start; set client_tls_cert for clients that verify it",
			"sha256_fingerprint", hex.EncodeToString(sum[:]))
	}
	if s.awsConfig == nil {
		opts := []func(*config.LoadOptions) error{}
		if cfg.Region != "" {
			opts = append(opts, config.WithRegion(cfg.Region))
		}
		c, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("loading AWS configuration: %w", err)
		}
		s.awsConfig = &c
	}
	if s.awsConfig.Region == "" && len(cfg.Databases) > 0 {
		s.awsConfig.Region = cfg.Databases[0].Region
	}
	if cfg.Auto != nil && s.autoCycle == nil {
		return nil, fmt.Errorf("%w: auto: this build of the proxy has no automatic mode; run it with rdsgate proxy start", ErrConfig)
	}
	s.creds = newCredentials(*s.awsConfig, s.metrics)
	if g := cfg.Gateway; g != nil {
		for _, w := range st.rbac.Review(cfg) {
			s.log.Warn(w)
		}
		if g.IAM != nil {
			if s.identities, err = newIdentityVerifier(*g.IAM, cfg.Region); err != nil {
				return nil, err
			}
		}
	}
	if s.audit, err = openAudit(cfg.AuditLog, cfg.replica()); err != nil {
		return nil, err
	}
	return s, nil
}

func gatewayTLSConfig(g *Gateway) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(g.TLSCert, g.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("%w: gateway tls_cert/tls_key: %v", ErrConfig, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if g.ClientCA == "" {
		return cfg, nil // IAM identity only
	}
	pem, err := os.ReadFile(g.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("%w: gateway client_ca: %v", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: gateway client_ca %s holds no PEM certificates", ErrConfig, g.ClientCA)
	}
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	return cfg, nil
}

// Start opens the listeners and the health endpoints and serves until
// Shutdown.
func (s *Server) Start() error {
	fail := func(what, addr string, err error) error {
		s.closeListeners()
		hint := ""
		if errors.Is(err, syscallEADDRINUSE) {
			hint = ": another process listens there (a local database?); pick another address"
		}
		return fmt.Errorf("%s: listen on %s: %v%s", what, addr, err, hint)
	}
	for i := range s.config().Databases {
		db := &s.config().Databases[i]
		if db.Listen == "" {
			continue
		}
		ln, err := s.listenOn(db.Listen)
		if err != nil {
			return fail("database "+db.Name, db.Listen, err)
		}
		s.listeners[db.Name] = ln
		s.serve(ln, db.Name, db.Protocol)
	}
	if g := s.config().Gateway; g != nil {
		for proto, addr := range map[string]string{ProtocolPostgres: g.ListenPostgres, ProtocolMySQL: g.ListenMySQL} {
			if addr == "" {
				continue
			}
			ln, err := s.listenOn(addr)
			if err != nil {
				return fail("gateway", addr, err)
			}
			s.listeners["gateway-"+proto] = ln
			s.serve(ln, "", proto)
		}
	}
	if g := s.config().Gateway; g != nil && g.ListenAPI != "" {
		if err := s.startAPI(g.ListenAPI); err != nil {
			return fail("gateway api", g.ListenAPI, err)
		}
	}
	if s.config().HealthAddress != "" {
		ln, err := net.Listen("tcp", s.config().HealthAddress)
		if err != nil {
			return fail("health", s.config().HealthAddress, err)
		}
		s.healthLn = ln
		s.health = &http.Server{Handler: s.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.health.Serve(ln) }()
	}
	s.started.Store(true)
	s.startAuto()
	names := make([]string, 0, len(s.listeners))
	for name, ln := range s.listeners {
		names = append(names, name+"="+ln.Addr().String())
	}
	sort.Strings(names)
	s.log.Info("rdsgate proxy started", "listeners", strings.Join(names, " "), "databases", len(s.config().Databases))
	return nil
}

// Addr returns where a listener ended up ("" when there is none): a
// database name, or gateway-postgres / gateway-mysql.
func (s *Server) Addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln, ok := s.listeners[name]; ok {
		return ln.Addr().String()
	}
	return ""
}

// APIAddr returns the gateway API's address, or "".
func (s *Server) APIAddr() string {
	if s.apiLn == nil {
		return ""
	}
	return s.apiLn.Addr().String()
}

// HealthAddr returns the health endpoint's address.
func (s *Server) HealthAddr() string {
	if s.healthLn == nil {
		return ""
	}
	return s.healthLn.Addr().String()
}

// Active returns the number of open client connections.
func (s *Server) Active() int { return int(s.active.Load()) }

// serve accepts clients of the database named dbName ("" for a gateway
// listener), as the configuration of the moment describes it.
func (s *Server) serve(ln net.Listener, dbName, proto string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
					return
				}
				s.log.Warn("accept failed", "error", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			var db *Database
			if dbName != "" {
				if db = s.config().Database(dbName); db == nil {
					c.Close() // removed by a reload while this listener closes
					continue
				}
			}
			source := sourceOf(c.RemoteAddr())
			if why := s.pending.enter(source, s.config().MaxPendingLogins, s.config().MaxPendingLoginsPerSource); why != "" {
				s.refusePending(c, db, proto, source, why)
				continue
			}
			s.metrics.pending.Inc()
			sess := &session{srv: s, client: newSwitchConn(c), db: db, proto: proto, id: s.nextID.Add(1), started: time.Now(), source: source}
			sess.pendingHeld.Store(true)
			s.active.Add(1)
			s.track(sess, true)
			s.wg.Add(1)
			sess.atEnd(s.wg.Done)
			sess.atEnd(func() { s.active.Add(-1) })
			sess.atEnd(func() { s.track(sess, false) })
			sess.atEnd(sess.finish)
			go func() {
				sess.run()
				if !sess.inLoop() {
					sess.end()
				}
			}()
		}
	}()
}

func (s *Server) track(sess *session, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[sess] = struct{}{}
	} else {
		delete(s.conns, sess)
	}
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Shutdown stops accepting, waits for open connections to finish until ctx
// is done, then closes what is left and reports it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.stopAuto()
	s.closeListeners()
	s.log.Info("shutting down: no new connections; waiting for open ones", "open", s.Active())
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		var open []string
		for sess := range s.conns {
			open = append(open, sess.describe())
			sess.close()
		}
		s.mu.Unlock()
		sort.Strings(open)
		err = fmt.Errorf("closed %s still open after the drain limit: %s", count(len(open), "connection"), strings.Join(open, "; "))
		s.log.Warn("drain limit reached", "closed", len(open), "connections", strings.Join(open, "; "))
		<-done
	}
	if s.health != nil {
		_ = s.health.Close()
	}
	if s.api != nil {
		_ = s.api.Close()
	}
	s.audit.close()
	s.log.Info("rdsgate proxy stopped")
	return err
}

// Close stops at once.
func (s *Server) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
}

func (s *Server) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/startup", func(w http.ResponseWriter, _ *http.Request) {
		if !s.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/liveness", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readiness", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !s.started.Load():
			http.Error(w, "starting", http.StatusServiceUnavailable)
		case s.config().Auto != nil && s.autoCycle != nil && s.AutoStatus().Cycles == 0:
			// A replica that has not discovered anything yet would
			// refuse every client of a discovered database.
			http.Error(w, "waiting for the first automatic mode cycle", http.StatusServiceUnavailable)
		case s.stopping.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case s.established.Load() >= int64(s.config().MaxConnections):
			http.Error(w, fmt.Sprintf("at max connections (%d)", s.config().MaxConnections), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	mux.HandleFunc("/automatic", s.autoHandler)
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	if s.config().Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// pendingLogins counts connections that have not logged in, in all and per
// source address.
type pendingLogins struct {
	mu       sync.Mutex
	total    int
	bySource map[string]int
}

// enter takes a place for a new connection, or says why there is none.
func (p *pendingLogins) enter(source string, max, perSource int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySource == nil {
		p.bySource = map[string]int{}
	}
	switch {
	case p.total >= max:
		return fmt.Sprintf("too many connections waiting to log in (max_pending_logins is %d)", max)
	case p.bySource[source] >= perSource:
		return fmt.Sprintf("too many connections from %s waiting to log in (max_pending_logins_per_source is %d)", source, perSource)
	}
	p.total++
	p.bySource[source]++
	return ""
}

func (p *pendingLogins) leave(source string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.bySource[source]--; p.bySource[source] <= 0 {
		delete(p.bySource, source)
	}
}

// sourceOf is the address a client's connections are counted by.
func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.Network()
}

// refusePending answers a connection the proxy will not wait for, in its
// protocol's terms where that costs nothing (no read, no goroutine), and
// closes it.
func (s *Server) refusePending(c net.Conn, db *Database, proto, source, why string) {
	label := "gateway"
	if db != nil {
		label = db.Name
	}
	s.metrics.connections.WithLabelValues(label, "refused_pending").Inc()
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	switch proto {
	case ProtocolPostgres:
		_, _ = c.Write(pgError("FATAL", "53300", "rdsgate: "+why, ""))
	case ProtocolMySQL:
		_ = writeMySQLPacket(c, 0, mysqlGreetingErr(1040, "rdsgate: "+why))
	}
	c.Close()
	// One line a second per limit, whichever sources a flood comes from.
	limit := "max_pending_logins"
	if strings.Contains(why, "per_source") {
		limit = "max_pending_logins_per_source"
	}
	s.junk.log(s.log, "connection refused before login: at "+limit, "reason", why, "client", source)
}

// rateLimitedLog writes at most one line a second of each message for
// what unauthenticated clients can cause at will, and says how many it left
// out.
type rateLimitedLog struct {
	mu   sync.Mutex
	msgs map[string]*rateLimitedMsg
}

type rateLimitedMsg struct {
	next       time.Time
	suppressed int
}

func (r *rateLimitedLog) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	if r.msgs == nil {
		r.msgs = map[string]*rateLimitedMsg{}
	}
	m := r.msgs[msg]
	if m == nil {
		m = &rateLimitedMsg{}
		r.msgs[msg] = m
	}
	now := time.Now()
	if now.Before(m.next) {
		m.suppressed++
		r.mu.Unlock()
		return
	}
	n := m.suppressed
	m.suppressed, m.next = 0, now.Add(time.Second)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_lines_suppressed", n)
	}
	l.Warn(msg, args...)
}

func sidecarOnTCP(cfg *Config) bool {
	for _, d := range cfg.Databases {
		if d.Listen != "" && !strings.HasPrefix(d.Listen, "unix:") {
			return true
		}
	}
	return false
}

// selfSignedCert makes the certificate sidecar listeners answer TLS with
// when none is configured: for the listeners' hosts, loopback and
// localhost, valid for a year (a restart makes a new one).
func selfSignedCert(cfg *Config) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "rdsgate proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	for _, d := range cfg.Databases {
		if host, _, err := net.SplitHostPort(d.Listen); err == nil && host != "" {
			if ip := net.ParseIP(host); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, host)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
