package proxyd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/sync/singleflight"
)

// Token lifetimes. RDS accepts a token for 15 minutes after signing; the
// proxy reuses one for at most tokenReuse, and never past the expiry of the
// credentials that signed it, less a margin for clock skew.
const (
	tokenLifetime = 15 * time.Minute
	tokenReuse    = 10 * time.Minute
	expiryMargin  = time.Minute
)

// credentials hands out IAM authentication tokens. Credentials of chained
// roles are cached by the SDK and refreshed before they expire (STS calls
// per credential lifetime, not per connection); tokens are cached per
// endpoint, region, user and role; concurrent requests for one key share a
// single signing (singleflight).
type credentials struct {
	base    aws.Config
	metrics *metrics
	now     func() time.Time
	signing singleflight.Group

	mu      sync.Mutex
	roles   map[string]aws.CredentialsProvider
	entries map[string]cachedEntry // tokens and Redshift logins, by key
}

// cachedEntry is a token or a Redshift login, valid until validTo.
type cachedEntry struct {
	value   any
	validTo time.Time
}

// signTimeout bounds one signing, which outlives the connection that
// started it when others wait for the same token.
const signTimeout = 30 * time.Second

func newCredentials(base aws.Config, m *metrics) *credentials {
	return &credentials{base: base, metrics: m, now: time.Now, roles: map[string]aws.CredentialsProvider{}, entries: map[string]cachedEntry{}}
}

// provider returns the credentials for a role (or the base ones), chaining
// from the base through the given roles in order.
func (c *credentials) provider(chain ...roleRef) aws.CredentialsProvider {
	p := c.base.Credentials
	key, last := "", ""
	for _, r := range chain {
		if r.arn == "" || r.arn == last {
			continue // the proxy's own principal, or the role it holds already
		}
		last = r.arn
		key += "|" + r.arn + "#" + r.externalID
		c.mu.Lock()
		cached, ok := c.roles[key]
		if !ok {
			cfg := c.base.Copy()
			cfg.Credentials = p
			client := sts.NewFromConfig(cfg)
			r := r
			inner := stscreds.NewAssumeRoleProvider(client, r.arn, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = "rdsgate-proxy"
				if r.externalID != "" {
					o.ExternalID = aws.String(r.externalID)
				}
			})
			cached = aws.NewCredentialsCache(&countingProvider{inner: inner, metrics: c.metrics}, func(o *aws.CredentialsCacheOptions) {
				o.ExpiryWindow = 5 * time.Minute
			})
			c.roles[key] = cached
		}
		c.mu.Unlock()
		p = cached
	}
	return p
}

type roleRef struct{ arn, externalID string }

// chain is the roles a database's credentials are reached through, from
// the proxy's base: another account's role (via_role_arn), then the role
// that holds the database's permission.
func (d *Database) chain(base roleRef) []roleRef {
	return []roleRef{base, {d.ViaRoleARN, d.ViaExternalID}, {d.AssumeRoleARN, d.ExternalID}}
}

// chainKey names a database's chain in cache keys.
func (d *Database) chainKey() string {
	return d.ViaRoleARN + "|" + d.ViaExternalID + "|" + d.AssumeRoleARN + "|" + d.ExternalID
}

// countingProvider counts the STS calls behind a credentials cache.
type countingProvider struct {
	inner   aws.CredentialsProvider
	metrics *metrics
}

func (p *countingProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p.metrics.stsCalls.Inc()
	return p.inner.Retrieve(ctx)
}

// token returns an IAM authentication token for user on the database.
func (c *credentials) token(ctx context.Context, base roleRef, db *Database, user string) (string, error) {
	key := "token|" + db.Endpoint + "|" + db.Region + "|" + user + "|" + base.arn + "|" + db.chainKey()
	v, err := c.cached(ctx, key, func(ctx context.Context) (any, time.Time, error) { return c.sign(ctx, base, db, user) })
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// cached returns what key holds while it is valid; otherwise fetch runs
// once for every caller that asks for key meanwhile, detached from this
// caller's context, so a client that gives up does not fail the others
// waiting for the same credentials. rdsgate_proxy_token_cache_total counts
// a hit for each caller served without a fetch of its own.
func (c *credentials) cached(ctx context.Context, key string, fetch func(context.Context) (any, time.Time, error)) (any, error) {
	c.mu.Lock()
	entry, ok := c.entries[key]
	c.mu.Unlock()
	if ok && c.now().Before(entry.validTo) {
		c.metrics.tokenCache.WithLabelValues("hit").Inc()
		return entry.value, nil
	}
	fetched := false
	ch := c.signing.DoChan(key, func() (any, error) {
		fetched = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), signTimeout)
		defer cancel()
		v, validTo, err := fetch(sctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.entries[key] = cachedEntry{v, validTo}
		c.mu.Unlock()
		return v, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		// Only the caller whose function ran sets fetched; the channel
		// receive orders that write before this read.
		if fetched {
			c.metrics.tokenCache.WithLabelValues("miss").Inc()
		} else {
			c.metrics.tokenCache.WithLabelValues("hit").Inc()
		}
		return r.Val, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *credentials) sign(ctx context.Context, base roleRef, db *Database, user string) (string, time.Time, error) {
	provider := c.provider(db.chain(base)...)
	creds, err := provider.Retrieve(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("getting AWS credentials for %s: %w", db.Name, err)
	}
	now := c.now()
	token, err := auth.BuildAuthToken(ctx, db.Endpoint, db.Region, user, staticProvider(creds))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing the IAM token for %s: %w", db.Name, err)
	}
	validTo := now.Add(tokenReuse)
	if creds.CanExpire && creds.Expires.Add(-expiryMargin).Before(validTo) {
		validTo = creds.Expires.Add(-expiryMargin)
	}
	return token, validTo, nil
}

type staticProvider aws.Credentials

func (s staticProvider) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials(s), nil
}
