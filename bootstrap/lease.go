package bootstrap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/rdsgate/rdsgate/policies"
)

// TagLease is the tag on the base principal that says which apply is
// writing its shard documents, and until when.
const TagLease = "rdsgate:lease"

// Lease defaults. The TTL bounds how long a crashed apply blocks others; a
// running apply renews it long before it runs out.
const (
	DefaultLeaseTTL    = 5 * time.Minute
	DefaultLeaseSettle = 2 * time.Second
)

// LeaseOptions control how an apply takes the lease.
type LeaseOptions struct {
	// Owner names this apply in the tag: host, process and a random part by
	// default. Letters, digits and _.:/=+-@ only (IAM's tag alphabet).
	Owner string
	// TTL is how long the lease lasts without renewal.
	TTL time.Duration
	// Wait is how long to wait for another holder before giving up; zero
	// gives up at once.
	Wait time.Duration
	// Settle is how long to wait after writing the tag before reading it
	// back: two applies that tag at once both read the winner's tag then.
	// Zero means DefaultLeaseSettle, negative none.
	Settle time.Duration
	// Poll is how often to look again while waiting.
	Poll time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// LeaseHeldError says that another apply holds the lease.
type LeaseHeldError struct {
	Principal string
	Holder    string
	Until     time.Time
	Waited    time.Duration
}

func (e *LeaseHeldError) Error() string {
	waited := ""
	if e.Waited >= time.Second {
		waited = fmt.Sprintf(" (waited %s)", e.Waited.Round(time.Second))
	}
	return fmt.Sprintf("another apply is writing the connect policies of %s%s: %s holds the lease until %s, %s from now "+
		"(a crashed apply's lease runs out then). Two applies at once would overwrite each other's documents: "+
		"run again when it has finished, or wait longer with --lease-wait",
		e.Principal, waited, e.Holder, e.Until.UTC().Format(time.RFC3339), time.Until(e.Until).Round(time.Second))
}

// ErrLeaseLost means the lease changed hands while an apply ran; it stopped
// before taking anything away.
var ErrLeaseLost = errors.New("lost the lease")

// Lease is one apply's claim on a base principal.
type Lease struct {
	api     IAMAPI
	kind    policies.PrincipalKind
	name    string
	owner   string
	ttl     time.Duration
	now     func() time.Time
	until   time.Time
	renewAt time.Time
}

var leaseAlphabet = regexp.MustCompile(`[^A-Za-z0-9_.:/=+@-]`)

// DefaultLeaseOwner names this process: host, pid and a random part.
func DefaultLeaseOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return leaseAlphabet.ReplaceAllString(fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b)), "_")
}

func parseLease(v string) (owner string, until time.Time, ok bool) {
	owner, exp, found := strings.Cut(v, " ")
	if !found {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return owner, time.Unix(sec, 0), true
}

func (l *Lease) subject() string { return fmt.Sprintf("%s %s", l.kind, l.name) }

func (l *Lease) read(ctx context.Context) (string, error) {
	var tags []iamtypes.Tag
	if l.kind == policies.PrincipalUser {
		out, err := l.api.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(l.name)})
		if isNotFound(err) {
			return "", noBase(l.kind, l.name)
		}
		if err != nil {
			return "", explain(err, "iam:GetUser", l.subject())
		}
		tags = out.User.Tags
	} else {
		out, err := l.api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(l.name)})
		if isNotFound(err) {
			return "", noBase(l.kind, l.name)
		}
		if err != nil {
			return "", explain(err, "iam:GetRole", l.subject())
		}
		tags = out.Role.Tags
	}
	return tagMap(tags)[TagLease], nil
}

func (l *Lease) write(ctx context.Context, value string) error {
	tag := []iamtypes.Tag{{Key: aws.String(TagLease), Value: aws.String(value)}}
	var err error
	if l.kind == policies.PrincipalUser {
		_, err = l.api.TagUser(ctx, &iam.TagUserInput{UserName: aws.String(l.name), Tags: tag})
		return explain(err, "iam:TagUser", l.subject())
	}
	_, err = l.api.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String(l.name), Tags: tag})
	return explain(err, "iam:TagRole", l.subject())
}

// AcquireLease takes the lease on a base principal: it waits (up to
// opts.Wait) while another owner's unexpired lease stands, writes its own,
// waits opts.Settle and reads it back. progress, when set, hears why it
// waits.
func AcquireLease(ctx context.Context, api IAMAPI, kind policies.PrincipalKind, name string, opts LeaseOptions, progress func(string)) (*Lease, error) {
	if opts.Owner == "" {
		opts.Owner = DefaultLeaseOwner()
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultLeaseTTL
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultLeaseSettle
	}
	if opts.Settle < 0 {
		opts.Settle = 0
	}
	if opts.Poll == 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Lease{api: api, kind: kind, name: name, owner: leaseAlphabet.ReplaceAllString(opts.Owner, "_"), ttl: opts.TTL, now: opts.Now}
	start := opts.Now()
	told := ""
	for {
		cur, err := l.read(ctx)
		if err != nil {
			return nil, err
		}
		if holder, until, ok := parseLease(cur); ok && holder != l.owner && until.After(opts.Now()) {
			waited := opts.Now().Sub(start)
			if waited >= opts.Wait {
				return nil, &LeaseHeldError{Principal: l.subject(), Holder: holder, Until: until, Waited: waited}
			}
			if progress != nil && told != holder {
				progress(fmt.Sprintf("waiting for the apply %s, which holds the lease on %s until %s", holder, l.subject(), until.UTC().Format(time.RFC3339)))
				told = holder
			}
			if err := sleep(ctx, min(opts.Poll, opts.Wait-waited)); err != nil {
				return nil, err
			}
			continue
		}
		l.until = opts.Now().Add(l.ttl)
		mine := fmt.Sprintf("%s %d", l.owner, l.until.Unix())
		if err := l.write(ctx, mine); err != nil {
			return nil, err
		}
		back, err := func() (string, error) {
			if err := sleep(ctx, opts.Settle); err != nil {
				return "", err
			}
			return l.read(ctx)
		}()
		if err != nil {
			// Stopped between writing and confirming: take the tag back,
			// so the next run does not wait for a lease nobody holds.
			_ = l.Release(context.WithoutCancel(ctx))
			return nil, err
		}
		if back == mine {
			l.renewAt = opts.Now().Add(l.ttl / 3)
			return l, nil
		}
		// Someone else tagged after us: theirs stands, wait for it.
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Check confirms the lease is still this apply's, and renews it when a
// third of its time has passed.
func (l *Lease) Check(ctx context.Context) error {
	cur, err := l.read(ctx)
	if err != nil {
		return err
	}
	holder, _, ok := parseLease(cur)
	if !ok || holder != l.owner {
		if !ok {
			holder = "nobody"
		}
		return fmt.Errorf("%w on %s: it is now held by %s, so another apply may be writing the same documents; "+
			"this one stopped before taking anything away: run it again once the other has finished", ErrLeaseLost, l.subject(), holder)
	}
	if l.now().Before(l.renewAt) {
		return nil
	}
	l.until = l.now().Add(l.ttl)
	if err := l.write(ctx, fmt.Sprintf("%s %d", l.owner, l.until.Unix())); err != nil {
		return err
	}
	l.renewAt = l.now().Add(l.ttl / 3)
	return nil
}

// Release removes the lease if it is still this apply's.
func (l *Lease) Release(ctx context.Context) error {
	cur, err := l.read(ctx)
	if err != nil {
		return err
	}
	if holder, _, ok := parseLease(cur); !ok || holder != l.owner {
		return nil
	}
	if l.kind == policies.PrincipalUser {
		_, err = l.api.UntagUser(ctx, &iam.UntagUserInput{UserName: aws.String(l.name), TagKeys: []string{TagLease}})
		return explain(err, "iam:UntagUser", l.subject())
	}
	_, err = l.api.UntagRole(ctx, &iam.UntagRoleInput{RoleName: aws.String(l.name), TagKeys: []string{TagLease}})
	return explain(err, "iam:UntagRole", l.subject())
}

// Owner is the name this lease is held under.
func (l *Lease) Owner() string { return l.owner }
