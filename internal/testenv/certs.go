package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// CA is a test certificate authority: it stands in for the RDS CA bundle
// (servers) and for the gateway's client CA (clients).
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	PEMFile string // the bundle, as users pass it to rdsgate
	Pool    *x509.CertPool
	dir     string
}

// NewCA makes a CA whose files live in dir (world-readable, so database
// servers running as their own user can read them).
func NewCA(t T, dir string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rdsgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, key: key, dir: dir, Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.PEMFile = filepath.Join(dir, "ca.pem")
	writePEM(t, ca.PEMFile, "CERTIFICATE", der, 0o644)
	return ca
}

// serial numbers certificates; tests issue them in parallel.
var serial atomic.Int64

// Issue makes a certificate for hosts (server) or for a client name, and
// returns the paths of its certificate and key files.
func (ca *CA) Issue(t T, name string, client bool, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	return ca.IssueSubject(t, name, pkix.Name{CommonName: name, Organization: []string{"rdsgate tests"}}, client, hosts...)
}

// IssueSubject makes a certificate with any subject (hostile ones too:
// a common name holding ",O=dba"), in files named after file.
func (ca *CA) IssueSubject(t T, file string, subject pkix.Name, client bool, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	name := file
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, name+".crt")
	keyFile = filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	// Server keys are read by servers running as their own user; in a test
	// folder that is fine.
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER, 0o644)
	return certFile, keyFile
}

// TLSCert loads a certificate pair for Go servers and clients.
func TLSCert(t T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writePEM(t T, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
