// Package bootstrap is everything rdsgate does against the AWS APIs: it
// creates the proxy's own permissions, applies shard plans to IAM in an order
// that never leaves a gap in access, enables IAM database authentication,
// discovers databases, detects drift and explains failures.
//
// It talks to AWS through small interfaces over the aws-sdk-go-v2 clients,
// with the SDK's credential chain (environment, shared files and profiles,
// web identity, instance metadata) and its endpoint overrides
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM, ...), so every piece runs against
// moto's server in tests.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rdsgate/rdsgate/policies"
)

// Config says how to reach AWS. Empty fields fall back to the SDK's own
// sources: AWS_REGION, AWS_PROFILE, the shared config files, and so on.
type Config struct {
	Region  string
	Profile string
	// EndpointURL overrides every service's endpoint (an emulator); the
	// AWS_ENDPOINT_URL environment variables work too.
	EndpointURL string
	// Endpoints override one service's endpoint each (IAM, STS, RDS), over
	// EndpointURL.
	Endpoints Endpoints
	// MaxAttempts per call, counting the first; throttling and 5xx answers
	// are retried with exponential backoff and jitter.
	MaxAttempts int
	MaxBackoff  time.Duration
	HTTPClient  *http.Client
	// Credentials replace the SDK's chain when set (tests, and callers that
	// already hold credentials).
	Credentials aws.CredentialsProvider
	// Calls, when set, records every API call.
	Calls *CallLog
	// LeaseSettle is how long an apply waits after writing its lease tag
	// before reading it back (DefaultLeaseSettle; RDSGATE_LEASE_SETTLE, a Go
	// duration, overrides it, for emulators that have no replication delay).
	LeaseSettle time.Duration
	// ConsistencyWait bounds how long IAM calls wait for IAM to show what
	// was just created: DefaultConsistencyWait.
	ConsistencyWait time.Duration
}

// Endpoints are per-service endpoint overrides; empty ones use the SDK's
// resolution.
type Endpoints struct {
	IAM, STS, RDS                string
	Redshift, RedshiftServerless string
}

// Defaults for retries: IAM throttles bursts of writes, and an apply of a
// large plan is a burst of writes.
const (
	DefaultMaxAttempts = 10
	DefaultMaxBackoff  = 20 * time.Second
)

// Clients are the AWS clients of one configuration.
type Clients struct {
	Config    aws.Config
	IAM       IAMAPI
	STS       *sts.Client
	Calls     *CallLog
	Endpoints Endpoints
	// LeaseSettle is the read-back delay of the apply lease.
	LeaseSettle time.Duration
	// ConsistencyWait bounds how long IAM calls wait for IAM to show what
	// was just created (DefaultConsistencyWait).
	ConsistencyWait time.Duration
	rds             sync.Map // region -> *rds.Client
}

// ErrNoRegion is returned when a command needs a region and none is set.
var ErrNoRegion = errors.New("no AWS region: pass --region, set AWS_REGION, or set region in the profile (~/.aws/config)")

// Connect loads the AWS configuration. It does not call AWS: credentials
// are resolved on the first call (see Doctor for checking them).
func Connect(ctx context.Context, c Config) (*Clients, error) {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Calls == nil {
		c.Calls = &CallLog{}
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = c.MaxAttempts
				o.MaxBackoff = c.MaxBackoff
				// The client-side retry quota gives up after a few dozen
				// throttled calls in a row; a long apply should wait instead.
				o.RateLimiter = ratelimit.None
			})
		}),
		config.WithAPIOptions([]func(*middleware.Stack) error{c.Calls.middleware, retryNotes}),
		// The SDK logs its own warnings to stderr ("failed to discard
		// remaining HTTP response body"); rdsgate reports errors itself.
		config.WithLogger(logging.Nop{}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.EndpointURL != "" {
		opts = append(opts, config.WithBaseEndpoint(c.EndpointURL))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	if c.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(c.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, explainConfigError(err, c.Profile)
	}
	// A typo in a region otherwise reaches AWS as a host name that does not
	// exist: retries, then an XML syntax error. Refuse it here, whether it
	// came from --region, AWS_REGION or the profile.
	if cfg.Region != "" {
		if _, err := policies.PartitionOf(cfg.Region); err != nil {
			from := "--region"
			if c.Region == "" {
				from = "the region from AWS_REGION or the profile"
			}
			return nil, fmt.Errorf("%s: %w", from, err)
		}
	}
	cl := &Clients{Config: cfg, Calls: c.Calls, Endpoints: c.Endpoints, LeaseSettle: c.LeaseSettle, ConsistencyWait: c.ConsistencyWait}
	if cl.LeaseSettle == 0 {
		cl.LeaseSettle = DefaultLeaseSettle
		if v := os.Getenv("RDSGATE_LEASE_SETTLE"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("RDSGATE_LEASE_SETTLE=%q is not a duration (2s, 100ms, 0s)", v)
			}
			cl.LeaseSettle = d
			if d == 0 {
				cl.LeaseSettle = -1 // none
			}
		}
	}
	cl.newClients()
	return cl, nil
}

// newClients makes the IAM and STS clients of the current configuration.
func (c *Clients) newClients() {
	c.IAM = newEventually(iam.NewFromConfig(c.Config, func(o *iam.Options) {
		if c.Endpoints.IAM != "" {
			o.BaseEndpoint = aws.String(c.Endpoints.IAM)
		}
	}), c.ConsistencyWait)
	c.STS = sts.NewFromConfig(c.Config, func(o *sts.Options) {
		if c.Endpoints.STS != "" {
			o.BaseEndpoint = aws.String(c.Endpoints.STS)
		}
	})
}

// UseIAMRegion sets the signing region IAM lives in for a partition when no
// region is configured: IAM is global, so commands that only touch IAM do
// not need the user to pick one.
func (c *Clients) UseIAMRegion(partition string) {
	if c.Config.Region != "" {
		return
	}
	region := map[string]string{policies.PartitionChina: "cn-north-1", policies.PartitionGovCloud: "us-gov-west-1"}[partition]
	if region == "" {
		region = "us-east-1"
	}
	c.Config.Region = region
	c.newClients()
}

// RDS returns the RDS client of a region ("" is the configured one).
func (c *Clients) RDS(region string) (*rds.Client, error) {
	if region == "" {
		region = c.Config.Region
	}
	if region == "" {
		return nil, ErrNoRegion
	}
	if v, ok := c.rds.Load(region); ok {
		return v.(*rds.Client), nil
	}
	cl := rds.NewFromConfig(c.Config, func(o *rds.Options) {
		o.Region = region
		if c.Endpoints.RDS != "" {
			o.BaseEndpoint = aws.String(c.Endpoints.RDS)
		}
	})
	v, _ := c.rds.LoadOrStore(region, cl)
	return v.(*rds.Client), nil
}

func explainConfigError(err error, profile string) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "failed to get shared config profile"):
		files := "~/.aws/config and ~/.aws/credentials"
		if f := os.Getenv("AWS_CONFIG_FILE"); f != "" {
			files = f
		}
		return fmt.Errorf("AWS profile %q is not defined in %s; list profiles with `aws configure list-profiles` or fix --profile/AWS_PROFILE", profile, files)
	}
	return fmt.Errorf("loading AWS configuration: %w", err)
}

// Call is one AWS API operation as the SDK made it (retries included).
type Call struct {
	Service   string
	Operation string
	Err       error
}

// Write reports whether the operation changes anything in AWS.
func (c Call) Write() bool { return IsWrite(c.Operation) }

// IsWrite reports whether an operation name is a write.
func IsWrite(op string) bool {
	for _, p := range []string{"Get", "List", "Describe", "Simulate"} {
		if strings.HasPrefix(op, p) {
			return false
		}
	}
	return op != "AssumeRole"
}

// CallLog records API calls. OnCall, when set, runs after every call
// completes (tests check the state of IAM after each write there).
type CallLog struct {
	mu     sync.Mutex
	calls  []Call
	OnCall func(Call)
}

func (l *CallLog) middleware(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("rdsgateCallLog",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			call := Call{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx), Err: err}
			l.mu.Lock()
			l.calls = append(l.calls, call)
			hook := l.OnCall
			l.mu.Unlock()
			if hook != nil {
				hook(call)
			}
			return out, md, err
		}), middleware.Before)
}

// Calls returns the calls so far.
func (l *CallLog) Calls() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Call(nil), l.calls...)
}

// Count returns how many calls were made and how many of them were writes.
func (l *CallLog) Count() (calls, writes int) {
	for _, c := range l.Calls() {
		calls++
		if c.Write() {
			writes++
		}
	}
	return calls, writes
}

// retryNotes tells the context's note function (WithNotes) about every
// attempt that failed with an answer the SDK retries, so a run waiting out
// throttling or an outage says so instead of going quiet.
func retryNotes(s *middleware.Stack) error {
	return s.Finalize.Insert(middleware.FinalizeMiddlewareFunc("rdsgateRetryNotes",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil && retried(err) {
				noteFrom(ctx, fmt.Sprintf("%s %s answered %s; the SDK retries with backoff", awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), describeRetry(err)))
			}
			return out, md, err
		}), "Retry", middleware.After)
}

// retried reports whether an attempt's error is one the SDK retries.
func retried(err error) bool {
	switch errorCode(err) {
	case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled":
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() >= 500
}

func describeRetry(err error) string {
	if code := errorCode(err); code != "" {
		return code
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("HTTP %d", re.HTTPStatusCode())
	}
	return "an error"
}

// CountPlanWrites is Count without the writes of the apply lease (tags on
// the base principal): the writes a plan needed.
func (l *CallLog) CountPlanWrites() (calls, writes int) {
	for _, c := range l.Calls() {
		calls++
		if c.Write() && !isLeaseOp(c.Operation) {
			writes++
		}
	}
	return calls, writes
}

func isLeaseOp(op string) bool {
	switch op {
	case "TagRole", "UntagRole", "TagUser", "UntagUser":
		return true
	}
	return false
}

// Reset forgets the calls so far.
func (l *CallLog) Reset() {
	l.mu.Lock()
	l.calls = nil
	l.mu.Unlock()
}

// errorCode returns the AWS error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	switch errorCode(err) {
	case "NoSuchEntity", "DBInstanceNotFound", "DBClusterNotFoundFault", "DBInstanceNotFoundFault", "DBProxyNotFoundFault", "DBClusterNotFound":
		return true
	}
	return false
}

func errorMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return err.Error()
}

// AWSError explains an AWS error in terms of what rdsgate was doing.
type AWSError struct {
	Op      string // the API operation
	Subject string // the principal and policy, or the database
	Code    string
	Msg     string
	Hint    string
	Err     error
}

func (e *AWSError) Error() string {
	s := fmt.Sprintf("%s on %s: %s: %s", e.Op, e.Subject, e.Code, e.Msg)
	if e.Hint != "" {
		s += ". " + e.Hint
	}
	return s
}

func (e *AWSError) Unwrap() error { return e.Err }

// explain wraps an AWS error with what rdsgate was doing and, for the errors
// users meet, what to do about it.
func explain(err error, op, subject string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &AWSError{Op: op, Subject: subject, Code: errorCode(err), Msg: errorMessage(err), Err: err}
	if e.Code == "" {
		e.Code = "error"
	}
	switch e.Code {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation":
		e.Hint = fmt.Sprintf("The caller may not call %s. Run `rdsgate doctor` to see which identity rdsgate uses, "+
			"and grant it the action (for the proxy's own principal: `rdsgate bootstrap print-iam`)", op)
	case "LimitExceeded", "LimitExceededException":
		e.Hint = "IAM refused because a quota was reached. The plan was made for the quotas in its settings; " +
			"compare them with `aws iam get-account-summary`, count other inline policies with --reserved-inline, then plan again. " +
			"Nothing that is still needed was taken away: after every write each database is granted somewhere"
	case "MalformedPolicyDocument":
		if strings.Contains(strings.ToLower(e.Msg), "invalid principal") {
			e.Hint = "IAM does not know a principal the document names. If it was created moments ago, IAM had not caught up " +
				"in the time rdsgate waited: run again in a minute. Otherwise check the ARN's account id and name"
		} else {
			e.Hint = "IAM rejected the document. A plan file edited by hand is the usual cause: plan again; if the plan was not edited, " +
				"report it with the document (rdsgate shards plan --format json)"
		}
	case "NoCredentialProviders", "":
		if strings.Contains(e.Msg, "failed to refresh cached credentials") || strings.Contains(e.Msg, "no EC2 IMDS role found") {
			e.Hint = "No AWS credentials were found; run `rdsgate doctor` for the usual causes and fixes"
		}
	}
	return e
}

// AssumeRole returns clients that act as the given role, with credentials
// cached and refreshed by the SDK (role chaining into another account).
func (c *Clients) AssumeRole(ctx context.Context, roleARN, externalID string) (*Clients, error) {
	return c.AssumeRoleSession(ctx, roleARN, externalID, "rdsgate")
}

// AssumeRoleSession is AssumeRole with a session name of the caller's
// choosing (CloudTrail shows it).
func (c *Clients) AssumeRoleSession(ctx context.Context, roleARN, externalID, session string) (*Clients, error) {
	if _, err := policies.ParseIAMARN(roleARN); err != nil {
		return nil, fmt.Errorf("%w: the role to assume, %q: %w (give arn:aws:iam::123456789012:role/NAME)", policies.ErrInvalidInput, roleARN, err)
	}
	cfg := c.Config.Copy()
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(c.STS, roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = session
		if externalID != "" {
			o.ExternalID = aws.String(externalID)
		}
	}))
	out := &Clients{Config: cfg, Calls: c.Calls, Endpoints: c.Endpoints, LeaseSettle: c.LeaseSettle, ConsistencyWait: c.ConsistencyWait}
	out.newClients()
	if _, err := out.Config.Credentials.Retrieve(ctx); err != nil {
		return nil, explain(err, "sts:AssumeRole", roleARN)
	}
	return out, nil
}
