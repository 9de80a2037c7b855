package proxyd

import (
	"errors"
	"sync"
)

// signerChoice remembers, per database, the principal whose token the
// database accepted last, so that once an apply has moved a database's
// permission, logins go straight to the principal that holds it.
type signerChoice struct {
	mu   sync.Mutex
	last map[string]string // database name: role ARN ("" the proxy's own)
}

// try logs in through each principal that may hold the database's
// permission (Database.FallbackRoleARNs), the one that worked last first,
// for as long as the database refuses the token. Any other failure ends it.
func (c *signerChoice) try(s *session, login func(signer *Database) error) error {
	signers := s.db.signers()
	if len(signers) > 1 {
		c.mu.Lock()
		last, ok := c.last[s.db.Name]
		c.mu.Unlock()
		for i, d := range signers {
			if ok && i > 0 && d.AssumeRoleARN == last {
				signers[0], signers[i] = signers[i], signers[0]
				break
			}
		}
	}
	for i, signer := range signers {
		err := login(signer)
		if err == nil {
			if len(signers) > 1 {
				c.mu.Lock()
				if c.last == nil {
					c.last = map[string]string{}
				}
				c.last[s.db.Name] = signer.AssumeRoleARN
				c.mu.Unlock()
			}
			return nil
		}
		if i == len(signers)-1 || !refusedToken(err) {
			return err
		}
		s.srv.metrics.signerFallback.WithLabelValues(s.db.Name).Inc()
		s.logger().Info("the database refused the token of one principal that may hold its permission, or its credentials could not be had; trying the next (an apply is moving it)",
			"refused_role", principalName(signer.AssumeRoleARN), "next_role", principalName(signers[i+1].AssumeRoleARN), "error", err.Error())
	}
	return nil // not reached: the last signer returns above
}

// forget drops what was remembered of databases no longer served.
func (c *signerChoice) forget(keep func(name string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.last {
		if !keep(name) {
			delete(c.last, name)
		}
	}
}

func principalName(arn string) string {
	if arn == "" {
		return "the proxy's own principal"
	}
	return arn
}

// refusedToken reports whether the database refused the login's token
// (as RDS does when the signer lacks rds-db:connect), or the signer's
// credentials could not be had (a shard role IAM does not show yet, or
// whose trust changed), rather than the login failing in another way.
func refusedToken(err error) bool {
	var pr *pgRefusal
	if errors.As(err, &pr) {
		return pr.Code == "28P01" || pr.Code == "28000"
	}
	var be *backendError
	if errors.As(err, &be) {
		return be.signing
	}
	var mr *mysqlRefusal
	return errors.As(err, &mr) && mr.code == 1045
}
