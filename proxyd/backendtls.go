package proxyd

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// backendTLS makes the TLS configurations of database connections and
// keeps what one handshake learns so the next does not pay for it again.
// A new connection costs the proxy a TLS handshake, and most of its CPU is
// two things that come out the same every time:
//
//   - The key exchange group. A Go client sends key shares for its first
//     preference (X25519MLKEM768 and X25519). PostgreSQL up to 17 offers
//     only P-256 (ssl_ecdh_curve), so every handshake made both shares for
//     nothing and took a HelloRetryRequest round trip. Once a server has
//     chosen a group, the groups Go ranks above it (offered, and passed
//     over) are left out, so the first key share is the one it takes.
//     The server's choice is authenticated by the handshake, so this
//     narrows nothing the server would have chosen; it is relearnt from
//     the full list every groupTTL to notice an upgraded server.
//   - Verifying the certificate chain (an ECDSA or RSA signature check per
//     link). A chain that verified for a server name is remembered until
//     the earliest expiry in it, at most verifiedTTL. The handshake still
//     proves the server holds the certificate's key (CertificateVerify),
//     and still checks the name: the cache is keyed by the name and every
//     certificate the server sent.
//
// Settings are rebuilt on reload, and this with them: a new CA bundle
// starts from nothing.
type backendTLS struct {
	roots *x509.CertPool
	now   func() time.Time

	mu       sync.Mutex
	groups   map[string]learnedGroup
	verified map[[sha256.Size]byte]time.Time // until when
	configs  map[configKey]*tls.Config
}

type learnedGroup struct {
	id    tls.CurveID
	until time.Time
}

type configKey struct {
	name  string
	group tls.CurveID // 0: the full list
}

const (
	groupTTL    = 10 * time.Minute
	verifiedTTL = time.Hour
	maxVerified = 4096 // chains remembered; past this the cache starts over
	maxGroups   = 4096 // servers' groups remembered (addresses change on failover); likewise
)

// goGroupOrder is the order in which crypto/tls picks the group it sends a
// key share for (the order of CurvePreferences is ignored).
var goGroupOrder = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
}

func newBackendTLS(roots *x509.CertPool) *backendTLS {
	return &backendTLS{roots: roots, now: time.Now, groups: map[string]learnedGroup{}, verified: map[[sha256.Size]byte]time.Time{}, configs: map[configKey]*tls.Config{}}
}

// config is the TLS configuration for a connection to the server at addr
// (the address reached, IP and port), verifying it as name.
func (b *backendTLS) config(addr, name string) *tls.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := configKey{name: name}
	if g, ok := b.groups[addr]; ok && b.now().Before(g.until) {
		key.group = g.id
	}
	if c := b.configs[key]; c != nil {
		return c
	}
	c := &tls.Config{
		ServerName: name,
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, through the cache; it runs on
		// every handshake, and fails it as Go's own would.
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return b.verify(name, cs.PeerCertificates) },
	}
	if i := slices.Index(goGroupOrder, key.group); i > 0 {
		c.CurvePreferences = goGroupOrder[i:]
	}
	b.configs[key] = c
	return c
}

// handshake runs the TLS handshake on a connection to a database, verifying
// it as name. What it learns belongs to the address the connection reached,
// not to the endpoint's name: an Aurora reader endpoint or a DNS name in a
// blue/green switchover resolves to servers that may choose differently,
// and a newer one must not be offered only what an older one took.
func (b *backendTLS) handshake(raw net.Conn, name string) (*tls.Conn, error) {
	addr := raw.RemoteAddr().String()
	tc := tls.Client(raw, b.config(addr, name))
	if err := tc.Handshake(); err != nil {
		// A server whose groups changed to one ranked above the one it
		// chose before (ssl_ecdh_curve, which takes a restart) fails this
		// one handshake; the next offers the full list again.
		b.forget(addr)
		return nil, err
	}
	b.learn(addr, tc.ConnectionState())
	return tc, nil
}

// learn notes the group a server chose.
func (b *backendTLS) learn(addr string, cs tls.ConnectionState) {
	if cs.CurveID == 0 {
		return // TLS 1.2 without ECDHE, or RSA key exchange
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	g, ok := b.groups[addr]
	if ok && g.id == cs.CurveID && b.now().Before(g.until) {
		return
	}
	if len(b.groups) >= maxGroups {
		clear(b.groups)
	}
	b.groups[addr] = learnedGroup{id: cs.CurveID, until: b.now().Add(groupTTL)}
}

// forget drops what was learnt about addr, after a handshake that failed.
func (b *backendTLS) forget(addr string) {
	b.mu.Lock()
	delete(b.groups, addr)
	b.mu.Unlock()
}

// verify checks a server's certificates for name against the CA bundle, as
// crypto/tls does, unless the same certificates verified for the same name
// before and none of them has expired since.
func (b *backendTLS) verify(name string, certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	key := chainKey(name, certs)
	now := b.now()
	b.mu.Lock()
	until, ok := b.verified[key]
	b.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	opts := x509.VerifyOptions{Roots: b.roots, CurrentTime: now, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	until = now.Add(verifiedTTL)
	for _, c := range chains[0] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	b.mu.Lock()
	if len(b.verified) >= maxVerified {
		clear(b.verified)
	}
	b.verified[key] = until
	b.mu.Unlock()
	return nil
}

// chainKey identifies a server name and the certificates sent for it.
func chainKey(name string, certs []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, part := range append([][]byte{[]byte(name)}, rawCerts(certs)...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

func rawCerts(certs []*x509.Certificate) [][]byte {
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return raw
}
