// Package gatewayclient is the users' side of an rdsgate gateway: it asks
// the gateway's API what the caller may reach, signs identity tokens, and
// opens local tunnels that psql uses with no password and no TLS settings
// (rdsgate db ls/connect/env). It speaks the gateway's published API and the
// PostgreSQL protocol through pgproto3; the daemon's own parsers stay in
// proxyd.
package gatewayclient

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/rdsgate/rdsgate/proxyd"
)

// Client is the users' side of a gateway: it asks the gateway's API
// what the caller may reach, signs identity tokens for it, and opens local
// tunnels to its databases (rdsgate db ls/connect/env).
type Client struct {
	API   *url.URL // https://host:port of the gateway's API
	Creds aws.CredentialsProvider
	TLS   *tls.Config // verifies the gateway
	http  *http.Client
	// Now is the clock tokens are signed with (tests move it).
	Now func() time.Time

	mu   sync.Mutex
	info *proxyd.GatewayInfo
}

// New connects to a gateway's API; caFile verifies its certificate ("" for
// the system's roots).
func New(api, caFile string, creds aws.CredentialsProvider) (*Client, error) {
	u, err := url.Parse(api)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the gateway %q must be an https URL of its API, for example https://db-gateway.example.com:8443", api)
	}
	cfg := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("gateway CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway CA %s holds no PEM certificates", caFile)
		}
	}
	return &Client{API: u, Creds: creds, TLS: cfg, Now: time.Now,
		http: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}}, nil
}

func (c *Client) get(ctx context.Context, path, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.API.JoinPath(path).String(), nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the gateway at %s: %s", c.API.Host, proxyd.Redact(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		// An older gateway may echo an upstream error; never print a token.
		return fmt.Errorf("the gateway refused: %s", proxyd.Redact(e.Error))
	}
	return json.Unmarshal(body, v)
}

// Info is what the gateway says about itself (cached).
func (c *Client) Info(ctx context.Context) (*proxyd.GatewayInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info != nil {
		return c.info, nil
	}
	var info proxyd.GatewayInfo
	if err := c.get(ctx, "/v1/gateway", "", &info); err != nil {
		return nil, err
	}
	if info.Audience == "" {
		return nil, fmt.Errorf("the gateway at %s does not take IAM identities; use a client certificate", c.API.Host)
	}
	c.info = &info
	return c.info, nil
}

// Token signs a fresh identity token for this gateway.
func (c *Client) Token(ctx context.Context) (string, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	creds, err := c.Creds.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("no AWS credentials to prove who you are (aws sso login, AWS_PROFILE, ...): %w", err)
	}
	return proxyd.IdentityToken(ctx, creds, info.STSRegion, info.STSEndpoint, info.Audience, c.Now())
}

// Databases lists what the caller may reach.
func (c *Client) Databases(ctx context.Context) (*proxyd.DatabasesResponse, error) {
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	var out proxyd.DatabasesResponse
	return &out, c.get(ctx, "/v1/databases", tok, &out)
}

// Addr is where the gateway serves a protocol.
func (c *Client) Addr(ctx context.Context, protocol string) (string, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	p := info.PostgresPort
	if protocol == proxyd.ProtocolMySQL {
		p = info.MySQLPort
	}
	if p == 0 {
		return "", fmt.Errorf("the gateway has no %s listener", protocol)
	}
	return net.JoinHostPort(c.API.Hostname(), strconv.Itoa(p)), nil
}

// Tunnel is a local PostgreSQL listener that forwards each connection to a
// gateway database over TLS, answering the gateway's password request with
// a fresh identity token: psql connects to it with no password and no TLS
// settings, and its cancel requests reach the gateway too.
type Tunnel struct {
	Addr     string // 127.0.0.1:port
	ln       net.Listener
	c        *Client
	database string // the gateway's name of the database
	dbName   string // the database name psql starts with
	wg       sync.WaitGroup
}

// OpenTunnel listens on a local port for a gateway database.
func (c *Client) OpenTunnel(ctx context.Context, database, dbName string) (*Tunnel, error) {
	if _, err := c.Addr(ctx, proxyd.ProtocolPostgres); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Tunnel{Addr: ln.Addr().String(), ln: ln, c: c, database: database, dbName: dbName}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer conn.Close()
				t.serve(conn)
			}()
		}
	}()
	return t, nil
}

// Close stops the tunnel and waits for its connections.
func (t *Tunnel) Close() {
	_ = t.ln.Close()
	t.wg.Wait()
}

// dialGateway opens a TLS connection to the gateway's PostgreSQL listener.
func (t *Tunnel) dialGateway(ctx context.Context) (net.Conn, error) {
	addr, err := t.c.Addr(ctx, proxyd.ProtocolPostgres)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil { // SSLRequest
		raw.Close()
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil || b[0] != 'S' {
		raw.Close()
		return nil, fmt.Errorf("the gateway at %s does not speak TLS", addr)
	}
	tc := tls.Client(raw, t.c.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with the gateway: %w", err)
	}
	return tc, nil
}

func (t *Tunnel) serve(client net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(msg string) {
		b, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08001", Message: "rdsgate tunnel: " + proxyd.Redact(msg)}).Encode(nil)
		_, _ = client.Write(b)
	}
	// psql sends nothing after a startup message until it is answered, so
	// the backend reads no further than the startup.
	fe := pgproto3.NewBackend(client, client)
	for {
		msg, err := fe.ReceiveStartupMessage()
		if err != nil {
			return
		}
		var req *pgproto3.StartupMessage
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := client.Write([]byte{'N'}); err != nil { // the tunnel is local
				return
			}
			continue
		case *pgproto3.CancelRequest:
			if gw, err := t.dialGateway(ctx); err == nil {
				b, _ := m.Encode(nil)
				_, _ = gw.Write(b)
				gw.Close()
			}
			return
		case *pgproto3.StartupMessage:
			req = m
		default:
			return
		}
		params := map[string]string{}
		for k, v := range req.Parameters {
			params[k] = v
		}
		// psql's \c NAME opens a new connection naming another database
		// on the same server: follow it (the gateway judges the name, as
		// for any other connection); NAME alone, since the tunnel is for
		// one gateway database.
		dbName := cmp.Or(req.Parameters["database"], t.dbName)
		if strings.Contains(dbName, "/") {
			fail(fmt.Sprintf("this tunnel reaches %s only: name a database on it (%s/NAME is implied), not %q", t.database, t.database, dbName))
			return
		}
		params["database"] = t.database + "/" + dbName
		gw, err := t.dialGateway(ctx)
		if err != nil {
			fail(err.Error())
			return
		}
		defer gw.Close()
		startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params}).Encode(nil)
		if _, err := gw.Write(startup); err != nil {
			return
		}
		// The gateway asks for a password: the identity token.
		var hdr [5]byte
		if _, err := io.ReadFull(gw, hdr[:]); err != nil {
			fail("the gateway closed the connection")
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > 1<<20 {
			return
		}
		rest := make([]byte, n-4)
		if _, err := io.ReadFull(gw, rest); err != nil {
			return
		}
		if hdr[0] == 'R' && len(rest) == 4 && binary.BigEndian.Uint32(rest) == 3 {
			tok, err := t.c.Token(ctx)
			if err != nil {
				fail(err.Error())
				return
			}
			pw, _ := (&pgproto3.PasswordMessage{Password: tok}).Encode(nil)
			if _, err := gw.Write(pw); err != nil {
				return
			}
		} else if _, err := client.Write(append(hdr[:], rest...)); err != nil {
			return
		}
		done := make(chan struct{})
		go func() { _, _ = io.Copy(client, gw); client.Close(); close(done) }()
		_, _ = io.Copy(gw, client)
		gw.Close()
		<-done
		return
	}
}
