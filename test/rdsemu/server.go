package rdsemu

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// Options configure an emulated endpoint.
type Options struct {
	// Host is the name clients use and tokens must carry (default localhost).
	Host   string
	Region string // default us-east-1
	Keys   *Keys
	// Now is the emulator's clock (default time.Now); tests move it to
	// expire tokens.
	Now func() time.Time
	// Endpoint is the host:port tokens must name when clients reach the
	// emulator by another address (the RDS endpoint name an emulated
	// DescribeDBInstances gave out, reached through a local port); default
	// Host and the listening port.
	Endpoint string
	// Authorize, when set, checks after the signature that the signer may
	// connect as the database user, as RDS asks IAM: keyID is the access
	// key that signed the token.
	Authorize func(keyID, dbUser string) error
}

// Server is an emulated RDS endpoint in front of a real server.
type Server struct {
	// Endpoint is host:port, as clients and tokens name it.
	Endpoint string
	// Address is where the emulator listens (127.0.0.1:port).
	Address string
	Port    int
	// CAFile is the CA bundle that verifies the emulator's certificate, as
	// the RDS CA bundle does for RDS.
	CAFile string
	opts   Options
	ln     net.Listener
	tls    *tls.Config
	handle func(net.Conn)

	mu       sync.Mutex
	sessions map[net.Conn]struct{}
	wg       sync.WaitGroup

	// Counters for tests.
	Accepted atomic.Int64
	Refused  atomic.Int64
	lastErr  atomic.Value
}

func newServer(t testenv.T, ca *testenv.CA, o Options) *Server {
	t.Helper()
	if o.Host == "" {
		o.Host = "localhost"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Keys == nil {
		o.Keys = &Keys{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{o.Host, "127.0.0.1"}
	if o.Endpoint != "" {
		if h, _, err := net.SplitHostPort(o.Endpoint); err == nil {
			hosts = append(hosts, h)
		}
	}
	certFile, keyFile := ca.Issue(t, "rds-endpoint-"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), false, hosts...)
	s := &Server{opts: o, ln: ln, CAFile: ca.PEMFile, sessions: map[net.Conn]struct{}{},
		tls: &tls.Config{Certificates: []tls.Certificate{testenv.TLSCert(t, certFile, keyFile)}, MinVersion: tls.VersionTLS12}}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.Endpoint = net.JoinHostPort(o.Host, strconv.Itoa(s.Port))
	if o.Endpoint != "" {
		s.Endpoint = o.Endpoint
	}
	s.Address = ln.Addr().String()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.track(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.track(c, false)
				defer c.Close()
				s.handle(c)
			}()
		}
	}()
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.sessions[c] = struct{}{}
	} else {
		delete(s.sessions, c)
	}
}

// DropSessions closes every open session, as a failover or a restart does.
func (s *Server) DropSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sessions {
		c.Close()
	}
}

// Close stops the endpoint.
func (s *Server) Close() {
	s.ln.Close()
	s.DropSessions()
	s.wg.Wait()
}

// LastRefusal says why the last login was refused (for test messages).
func (s *Server) LastRefusal() string {
	if v, ok := s.lastErr.Load().(string); ok {
		return v
	}
	return ""
}

func (s *Server) refuse(reason error) {
	s.Refused.Add(1)
	s.lastErr.Store(reason.Error())
}

func (s *Server) verify(token, user string) error {
	keyID, err := VerifyKey(token, s.opts.Keys, Expect{Host: s.Endpoint, Region: s.opts.Region, DBUser: user, Now: s.opts.Now()})
	if err == nil && s.opts.Authorize != nil {
		if err = s.opts.Authorize(keyID, user); err != nil {
			err = fmt.Errorf("IAM: %w", err)
		}
	}
	if err != nil {
		s.refuse(err)
	}
	return err
}

// relay copies both ways until either side closes.
func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
