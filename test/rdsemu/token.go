// Package rdsemu is an RDS emulator for tests: it stands in front of a real
// PostgreSQL or MariaDB server and does what RDS does at login with IAM
// database authentication. It requires TLS, asks for the password in clear
// text (AuthenticationCleartextPassword, or an auth switch to
// mysql_clear_password), verifies the token's SigV4 signature, DBUser, host,
// region and expiry with its own implementation of SigV4, refuses with RDS's
// messages, and then lets the session through to the real server.
package rdsemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Keys holds the secret of every access key the emulator accepts, as IAM
// and STS would.
type Keys struct {
	mu sync.Mutex
	m  map[string]key
}

type key struct{ secret, session string }

// Add registers an access key (and its session token, for STS credentials).
func (k *Keys) Add(id, secret, session string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]key{}
	}
	k.m[id] = key{secret, session}
}

func (k *Keys) get(id string) (key, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[id]
	return v, ok
}

// Expect is what a token must say to open a session.
type Expect struct {
	Host   string // endpoint the client connected to, host:port
	Region string
	DBUser string
	Now    time.Time
}

const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Verify checks an IAM authentication token: a SigV4 presigned URL for
// Action=connect on the endpoint, service rds-db. It returns why a token is
// refused (the client only ever sees RDS's generic message).
func Verify(token string, keys *Keys, e Expect) error {
	_, err := VerifyKey(token, keys, e)
	return err
}

// VerifyKey is Verify that also says which access key signed the token,
// for an IAM check of the signer's permissions.
func VerifyKey(token string, keys *Keys, e Expect) (string, error) {
	keyID, err := verify(token, keys, e)
	return keyID, err
}

func verify(token string, keys *Keys, e Expect) (string, error) {
	hostPart, rawQuery, ok := strings.Cut(token, "?")
	if !ok {
		return "", fmt.Errorf("not a presigned URL")
	}
	hostPart = strings.TrimSuffix(hostPart, "/") // the path is empty or "/"
	if hostPart != e.Host {
		return "", fmt.Errorf("token is for host %q, not %q", hostPart, e.Host)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("query: %v", err)
	}
	get := func(k string) string { return q.Get(k) }
	if get("Action") != "connect" {
		return "", fmt.Errorf("action %q", get("Action"))
	}
	if get("DBUser") != e.DBUser {
		return "", fmt.Errorf("token is for user %q, not %q", get("DBUser"), e.DBUser)
	}
	if get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || get("X-Amz-SignedHeaders") != "host" {
		return "", fmt.Errorf("algorithm %q, signed headers %q", get("X-Amz-Algorithm"), get("X-Amz-SignedHeaders"))
	}
	cred := strings.Split(get("X-Amz-Credential"), "/")
	if len(cred) != 5 || cred[3] != "rds-db" || cred[4] != "aws4_request" {
		return "", fmt.Errorf("credential scope %q", get("X-Amz-Credential"))
	}
	if cred[2] != e.Region {
		return "", fmt.Errorf("signed for region %s, not %s", cred[2], e.Region)
	}
	signed, err := time.Parse("20060102T150405Z", get("X-Amz-Date"))
	if err != nil || cred[1] != get("X-Amz-Date")[:8] {
		return "", fmt.Errorf("date %q", get("X-Amz-Date"))
	}
	expires, err := strconv.Atoi(get("X-Amz-Expires"))
	if err != nil || expires <= 0 || expires > 900 {
		return "", fmt.Errorf("expires %q", get("X-Amz-Expires"))
	}
	if e.Now.After(signed.Add(time.Duration(expires) * time.Second)) {
		return "", fmt.Errorf("expired at %s", signed.Add(time.Duration(expires)*time.Second))
	}
	if signed.After(e.Now.Add(5 * time.Minute)) {
		return "", fmt.Errorf("signed in the future (%s)", signed)
	}
	if err := checkSigned(keys, q, cred, "/", func(string) string { return hostPart }); err != nil {
		return "", err
	}
	return cred[0], nil
}

// checkSigned finishes checking a presigned GET whose scope and time were
// checked: the access key, its session token, and the signature over the
// path, the query and each signed header (header gives their values).
func checkSigned(keys *Keys, q url.Values, cred []string, path string, header func(name string) string) error {
	k, ok := keys.get(cred[0])
	if !ok {
		return fmt.Errorf("unknown access key %s", cred[0])
	}
	if k.session != q.Get("X-Amz-Security-Token") {
		return fmt.Errorf("session token does not match the access key")
	}
	// Canonical request: every query parameter but the signature, sorted
	// and encoded as SigV4 says; the signed headers; the empty payload's hash.
	var params []string
	for name := range q {
		if name != "X-Amz-Signature" {
			params = append(params, name)
		}
	}
	sort.Strings(params)
	var parts []string
	for _, name := range params {
		vals := append([]string(nil), q[name]...)
		sort.Strings(vals)
		for _, v := range vals {
			parts = append(parts, uriEncode(name)+"="+uriEncode(v))
		}
	}
	headers := strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	var canonHeaders strings.Builder
	for _, h := range headers {
		canonHeaders.WriteString(h + ":" + strings.TrimSpace(header(h)) + "\n")
	}
	canonical := strings.Join([]string{"GET", path, strings.Join(parts, "&"), canonHeaders.String(), strings.Join(headers, ";"), emptyPayloadHash}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{"AWS4-HMAC-SHA256", q.Get("X-Amz-Date"), strings.Join(cred[1:], "/"), hex.EncodeToString(sum[:])}, "\n")
	signingKey := []byte("AWS4" + k.secret)
	for _, part := range cred[1:] {
		signingKey = hmacSHA256(signingKey, part)
	}
	if !hmac.Equal([]byte(hex.EncodeToString(hmacSHA256(signingKey, toSign))), []byte(q.Get("X-Amz-Signature"))) {
		return fmt.Errorf("signature does not match")
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// uriEncode encodes as SigV4 wants: unreserved characters as they are,
// everything else as %XX in upper case.
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
