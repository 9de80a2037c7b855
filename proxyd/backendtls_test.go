package proxyd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// tlsServer is a database's TLS side: it records the client's plaintext
// handshake records, so a test sees how many ClientHellos the handshake
// took (two after a HelloRetryRequest).
type tlsServer struct {
	addr  string
	mu    sync.Mutex
	cfg   *tls.Config
	hello chan int // ClientHellos of each handshake
}

func startTLSServer(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &tlsServer{addr: ln.Addr().String(), cfg: cfg, hello: make(chan int, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rec := &recordingConn{Conn: c}
				s.mu.Lock()
				cfg := s.cfg
				s.mu.Unlock()
				tc := tls.Server(rec, cfg)
				_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte{'!'})
				}
				s.hello <- clientHellos(rec.read)
			}()
		}
	}()
	return s
}

func (s *tlsServer) set(cfg *tls.Config) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

type recordingConn struct {
	net.Conn
	read []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read = append(c.read, p[:n]...)
	return n, err
}

// clientHellos counts the ClientHello messages in a client's TLS records
// (handshake records, content type 22, whose message type is 1).
func clientHellos(b []byte) int {
	n := 0
	for len(b) >= 5 {
		size := int(b[3])<<8 | int(b[4])
		if len(b) < 5+size {
			break
		}
		if b[0] == 22 && size > 0 && b[5] == 1 {
			n++
		}
		b = b[5+size:]
	}
	return n
}

// connect runs the proxy's side of one handshake against the server and
// returns its error and how many ClientHellos it took.
func connect(t *testing.T, b *backendTLS, s *tlsServer, name string) (*tls.Conn, int, error) {
	t.Helper()
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	tc, err := b.handshake(raw, name)
	if err == nil {
		var one [1]byte
		if _, err := tc.Read(one[:]); err != nil {
			t.Fatalf("reading after the handshake: %v", err)
		}
	} else {
		raw.Close()
	}
	select {
	case n := <-s.hello:
		return tc, n, err
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not finish the handshake")
		return nil, 0, nil
	}
}

func serverCert(t *testing.T, ca *testenv.CA, host string) tls.Certificate {
	t.Helper()
	certFile, keyFile := ca.Issue(t, "db-"+host, false, host)
	return testenv.TLSCert(t, certFile, keyFile)
}

// A PostgreSQL server up to 17 offers only P-256: the first handshake needs
// a HelloRetryRequest, the ones after it send the share the server takes.
// A server whose groups change gets the full list again after one failed
// handshake; and the group is relearnt after groupTTL.
func TestBackendTLSLearnsTheServersGroup(t *testing.T) {
	ca := testenv.NewCA(t, t.TempDir())
	cert := serverCert(t, ca, "localhost")
	srv := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP256}})
	b := newBackendTLS(ca.Pool)
	now := time.Now()
	b.now = func() time.Time { return now }

	tc, hellos, err := connect(t, b, srv, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if hellos != 2 || tc.ConnectionState().CurveID != tls.CurveP256 {
		t.Fatalf("first handshake: %d ClientHellos, group %v; want a HelloRetryRequest to P-256", hellos, tc.ConnectionState().CurveID)
	}
	for range 3 {
		tc, hellos, err = connect(t, b, srv, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		if hellos != 1 || tc.ConnectionState().CurveID != tls.CurveP256 {
			t.Fatalf("after learning: %d ClientHellos, group %v; want one ClientHello with a P-256 share", hellos, tc.ConnectionState().CurveID)
		}
	}

	// After groupTTL the full list is offered again.
	now = now.Add(groupTTL + time.Second)
	if _, hellos, _ = connect(t, b, srv, "localhost"); hellos != 2 {
		t.Fatalf("after %v: %d ClientHellos, want the full list (a HelloRetryRequest) again", groupTTL, hellos)
	}

	// The server now takes only X25519, which Go ranks above P-256: the
	// narrowed offer fails once, and the next handshake offers everything.
	srv.set(&tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.X25519}})
	if _, _, err = connect(t, b, srv, "localhost"); err == nil {
		t.Fatal("a handshake offering only groups the server no longer has succeeded")
	}
	tc, hellos, err = connect(t, b, srv, "localhost")
	if err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	if hellos != 1 || tc.ConnectionState().CurveID != tls.X25519 {
		t.Fatalf("after the failure: %d ClientHellos, group %v; want X25519 from the full list", hellos, tc.ConnectionState().CurveID)
	}
}

// A server taking Go's first choice (MySQL, PostgreSQL 18 with ML-KEM) is
// never narrowed: the offer stays the full list.
func TestBackendTLSKeepsTheFullListForTheFirstChoice(t *testing.T) {
	ca := testenv.NewCA(t, t.TempDir())
	srv := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{serverCert(t, ca, "localhost")}})
	b := newBackendTLS(ca.Pool)
	for range 2 {
		tc, hellos, err := connect(t, b, srv, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		if hellos != 1 || tc.ConnectionState().CurveID != tls.X25519MLKEM768 {
			t.Fatalf("%d ClientHellos, group %v; want X25519MLKEM768 at once", hellos, tc.ConnectionState().CurveID)
		}
	}
	if c := b.config(srv.addr, "localhost"); c.CurvePreferences != nil {
		t.Fatalf("offer narrowed to %v for a server that takes the first choice", c.CurvePreferences)
	}
}

// Servers behind one endpoint name (an Aurora reader endpoint, a blue/green
// switchover) may choose differently: what one server chose does not
// narrow the offer to another.
func TestBackendTLSLearnsPerServer(t *testing.T) {
	ca := testenv.NewCA(t, t.TempDir())
	cert := serverCert(t, ca, "localhost")
	older := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP256}})
	newer := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	b := newBackendTLS(ca.Pool)
	for _, step := range []struct {
		srv    *tlsServer
		hellos int
		group  tls.CurveID
	}{
		{older, 2, tls.CurveP256},
		{older, 1, tls.CurveP256},
		{newer, 1, tls.X25519MLKEM768},
		{older, 1, tls.CurveP256},
		{newer, 1, tls.X25519MLKEM768},
	} {
		tc, hellos, err := connect(t, b, step.srv, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		if hellos != step.hellos || tc.ConnectionState().CurveID != step.group {
			t.Fatalf("server %s: %d ClientHellos, group %v; want %d and %v", step.srv.addr, hellos, tc.ConnectionState().CurveID, step.hellos, step.group)
		}
	}
}

// The verification cache remembers a chain for a name; it is attacked here
// with everything that must still fail: another name, an expired
// certificate, an impostor holding only the certificate, an untrusted CA.
// A cached chain is seen to be cached by emptying the trusted roots.
func TestBackendTLSVerificationCache(t *testing.T) {
	ca := testenv.NewCA(t, t.TempDir())
	cert := serverCert(t, ca, "db.example")
	srv := startTLSServer(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	b := newBackendTLS(ca.Pool)
	now := time.Now()
	b.now = func() time.Time { return now }

	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError

	if _, _, err := connect(t, b, srv, "db.example"); err != nil {
		t.Fatal(err)
	}
	b.roots = x509.NewCertPool() // the cache alone vouches for the chain now
	if _, _, err := connect(t, b, srv, "db.example"); err != nil {
		t.Fatalf("a chain verified a moment ago: %v", err)
	}
	if _, _, err := connect(t, b, srv, "other.example"); !errors.As(err, &host) && !errors.As(err, &unknown) {
		t.Fatalf("the same chain for another name: %v, want a verification failure", err)
	}

	// An impostor with the real certificate and a key of its own fails the
	// proof of possession, cache or not.
	impostorKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv.set(&tls.Config{Certificates: []tls.Certificate{{Certificate: cert.Certificate, PrivateKey: impostorKey}}})
	if _, _, err := connect(t, b, srv, "db.example"); err == nil {
		t.Fatal("a server holding only the certificate was accepted")
	}

	// A certificate from a CA not in the bundle.
	b.roots = ca.Pool
	other := testenv.NewCA(t, t.TempDir())
	srv.set(&tls.Config{Certificates: []tls.Certificate{serverCert(t, other, "db.example")}})
	if _, _, err := connect(t, b, srv, "db.example"); !errors.As(err, &unknown) {
		t.Fatalf("a certificate of another CA: %v, want x509.UnknownAuthorityError", err)
	}

	// The cached chain expires with its certificates, and after verifiedTTL.
	srv.set(&tls.Config{Certificates: []tls.Certificate{cert}})
	if _, _, err := connect(t, b, srv, "db.example"); err != nil {
		t.Fatal(err)
	}
	b.roots = x509.NewCertPool()
	now = now.Add(verifiedTTL + time.Second)
	if _, _, err := connect(t, b, srv, "db.example"); !errors.As(err, &unknown) {
		t.Fatalf("after %v the chain is verified again (against no roots): %v, want x509.UnknownAuthorityError", verifiedTTL, err)
	}
	b.roots = ca.Pool
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	now = leaf.NotAfter.Add(-time.Minute)
	if _, _, err := connect(t, b, srv, "db.example"); err != nil {
		t.Fatal(err)
	}
	now = leaf.NotAfter.Add(time.Second)
	if _, _, err := connect(t, b, srv, "db.example"); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Fatalf("an expired certificate that verified a minute before it expired: %v, want it expired", err)
	}
}

// Addresses change on every failover: what is remembered stays bounded,
// and the server learnt last is kept.
func TestBackendTLSRemembersBoundedGroups(t *testing.T) {
	b := newBackendTLS(x509.NewCertPool())
	var last string
	for i := range maxGroups + 10 {
		last = fmt.Sprintf("10.0.%d.%d:5432", i/256, i%256)
		b.learn(last, tls.ConnectionState{CurveID: tls.CurveP256})
	}
	if len(b.groups) > maxGroups {
		t.Fatalf("%d groups remembered, want at most %d", len(b.groups), maxGroups)
	}
	if c := b.config(last, "db"); !slices.Equal(c.CurvePreferences, []tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521}) {
		t.Fatalf("the server learnt last is offered %v, want P-256 first", c.CurvePreferences)
	}
}
