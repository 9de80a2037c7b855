package proxyd

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// IAM identity for gateway clients, the way aws-iam-authenticator and
// Vault's AWS auth do it: the client presigns sts:GetCallerIdentity with its
// own credentials, binding the request to this gateway with a signed
// header, and sends the URL as its password over TLS. The gateway sends the
// request to STS (only to an STS endpoint it trusts), and STS answers with
// the caller's ARN: proof of identity without the gateway seeing a secret.
const (
	// IdentityTokenPrefix starts every identity token.
	IdentityTokenPrefix = "rdsgate-iam-v1."
	// AudienceHeader binds a token to one gateway: STS refuses the
	// signature if the gateway sends another value than the client signed.
	AudienceHeader = "x-rdsgate-gateway"
	// IdentityTokenLifetime is how long a token is good for.
	IdentityTokenLifetime = 5 * time.Minute
	emptyPayloadSHA256    = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxClockSkew          = 5 * time.Minute
)

// IdentityToken presigns sts:GetCallerIdentity for a gateway: what
// `rdsgate db connect` sends as the password. stsEndpoint is the STS URL
// the gateway trusts ("" for https://sts.<region>.amazonaws.com).
func IdentityToken(ctx context.Context, creds aws.Credentials, region, stsEndpoint, audience string, now time.Time) (string, error) {
	if stsEndpoint == "" {
		stsEndpoint = "https://sts." + region + ".amazonaws.com"
	}
	u, err := url.Parse(strings.TrimRight(stsEndpoint, "/") + "/")
	if err != nil {
		return "", fmt.Errorf("sts endpoint %q: %w", stsEndpoint, err)
	}
	q := url.Values{"Action": {"GetCallerIdentity"}, "Version": {"2011-06-15"},
		"X-Amz-Expires": {strconv.Itoa(int(IdentityTokenLifetime.Seconds()))}}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(AudienceHeader, audience)
	signed, _, err := v4.NewSigner().PresignHTTP(ctx, creds, req, emptyPayloadSHA256, "sts", region, now)
	if err != nil {
		return "", fmt.Errorf("presigning sts:GetCallerIdentity: %w", err)
	}
	return IdentityTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(signed)), nil
}

// IsIdentityToken reports whether a password is an identity token.
func IsIdentityToken(s string) bool { return strings.HasPrefix(s, IdentityTokenPrefix) }

// IAMAuth configures IAM identity on the gateway.
type IAMAuth struct {
	// Audience is this gateway's name in tokens (clients sign it; a token
	// for another gateway is refused by STS).
	Audience string `json:"audience"`
	// Region of the STS endpoint clients sign for (default: the config's).
	Region string `json:"region,omitempty"`
	// STSEndpoint overrides https://sts.<region>.amazonaws.com (a VPC
	// endpoint's name, or an emulator in tests). Only this endpoint and the
	// public STS endpoints are ever called.
	STSEndpoint string `json:"sts_endpoint,omitempty"`
	// CacheTTL is how long a verified token's identity is kept (default 60s).
	CacheTTL Duration `json:"cache_ttl,omitempty"`
}

// identityVerifier checks identity tokens against STS.
type identityVerifier struct {
	cfg     IAMAuth
	allowed map[string]bool // STS hosts it will call
	client  *http.Client
	now     func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedIdentity
}

type cachedIdentity struct {
	id      Identity
	expires time.Time
}

func newIdentityVerifier(cfg IAMAuth, region string) (*identityVerifier, error) {
	if cfg.Region == "" {
		cfg.Region = region
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = Duration(time.Minute)
	}
	v := &identityVerifier{cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}, now: time.Now, cache: map[[32]byte]cachedIdentity{},
		allowed: map[string]bool{"sts.amazonaws.com": true, "sts." + cfg.Region + ".amazonaws.com": true, "sts." + cfg.Region + ".amazonaws.com.cn": true}}
	if cfg.STSEndpoint != "" {
		u, err := url.Parse(cfg.STSEndpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%w: gateway iam.sts_endpoint %q is not a URL", ErrConfig, cfg.STSEndpoint)
		}
		v.allowed[u.Host] = true
	}
	return v, nil
}

// errIdentity is a refused identity token; its message is safe to show the
// client (it never repeats the token).
type errIdentity struct{ msg string }

func (e *errIdentity) Error() string { return e.msg }

func refuseIdentity(format string, args ...any) error {
	return &errIdentity{msg: fmt.Sprintf(format, args...)}
}

// verify returns the names the token's caller is known by: for an assumed
// role, the role's ARN (without its path, which STS does not say) and the
// session's; for a user, the user's ARN.
func (v *identityVerifier) verify(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	now := v.now()
	v.mu.Lock()
	if c, ok := v.cache[key]; ok && now.Before(c.expires) {
		v.mu.Unlock()
		return c.id, nil
	}
	v.mu.Unlock()

	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, IdentityTokenPrefix))
	if err != nil {
		return Identity{}, refuseIdentity("the identity token is not rdsgate's format; get a fresh one with `rdsgate db connect` or `rdsgate db env`")
	}
	u, err := url.Parse(string(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return Identity{}, refuseIdentity("the identity token holds no STS URL")
	}
	if !v.allowed[u.Host] || (u.Scheme == "http" && u.Host != hostOf(v.cfg.STSEndpoint)) {
		return Identity{}, refuseIdentity("the identity token was signed for STS at %q, which this gateway does not call (it trusts sts.%s.amazonaws.com and its configured endpoint)", sanitize(u.Host), v.cfg.Region)
	}
	q := u.Query()
	if q.Get("Action") != "GetCallerIdentity" || len(q["Action"]) != 1 {
		return Identity{}, refuseIdentity("the identity token is not an sts:GetCallerIdentity request")
	}
	signedHeaders := strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	if !slices.Contains(signedHeaders, AudienceHeader) {
		return Identity{}, refuseIdentity("the identity token is not bound to a gateway (no signed %s header): it was not made for rdsgate", AudienceHeader)
	}
	signedAt, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return Identity{}, refuseIdentity("the identity token has no signing time")
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires <= 0 || time.Duration(expires)*time.Second > 15*time.Minute {
		return Identity{}, refuseIdentity("the identity token's lifetime (X-Amz-Expires) must be 1 to 900 seconds")
	}
	if now.After(signedAt.Add(time.Duration(expires) * time.Second)) {
		return Identity{}, refuseIdentity("the identity token expired at %s; get a fresh one (rdsgate db connect makes one per connection)", signedAt.Add(time.Duration(expires)*time.Second).UTC().Format(time.RFC3339))
	}
	if signedAt.After(now.Add(maxClockSkew)) {
		return Identity{}, refuseIdentity("the identity token was signed in the future (%s): check the client's clock", signedAt.UTC().Format(time.RFC3339))
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Identity{}, err
	}
	req.Header.Set(AudienceHeader, v.cfg.Audience)
	resp, err := v.client.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("calling STS to check an identity token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Identity{}, fmt.Errorf("reading STS's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		_ = xml.Unmarshal(body, &e)
		if resp.StatusCode >= 500 {
			return Identity{}, fmt.Errorf("STS answered %d %s", resp.StatusCode, e.Code)
		}
		return Identity{}, refuseIdentity("STS refused the identity token (%s): it was signed for another gateway, or its credentials are no longer valid", sanitize(e.Code))
	}
	var out struct {
		Arn     string `xml:"GetCallerIdentityResult>Arn"`
		Account string `xml:"GetCallerIdentityResult>Account"`
	}
	if err := xml.Unmarshal(body, &out); err != nil || out.Arn == "" {
		return Identity{}, fmt.Errorf("STS's answer has no caller ARN")
	}
	id := IdentityFromARN(out.Arn)
	v.mu.Lock()
	if len(v.cache) > 10000 {
		for k, c := range v.cache {
			if !now.Before(c.expires) {
				delete(v.cache, k)
			}
		}
	}
	ttl := time.Duration(v.cfg.CacheTTL)
	if end := signedAt.Add(time.Duration(expires) * time.Second); end.Before(now.Add(ttl)) {
		ttl = end.Sub(now)
	}
	v.cache[key] = cachedIdentity{id: id, expires: now.Add(ttl)}
	v.mu.Unlock()
	return id, nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// tokenDigest is how logs and the audit trail name a token without
// revealing it.
func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
