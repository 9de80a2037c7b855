package proxyd

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshift"
	"github.com/aws/aws-sdk-go-v2/service/redshiftserverless"
)

// Services a database may be.
const (
	// ServiceRDS is RDS and Aurora (and RDS Proxy): IAM authentication
	// tokens, the default.
	ServiceRDS = ""
	// ServiceRedshift is a provisioned Redshift cluster: temporary
	// credentials from redshift:GetClusterCredentials (for the client's
	// database user) or GetClusterCredentialsWithIAM (iam_identity).
	ServiceRedshift = "redshift"
	// ServiceRedshiftServerless is a Redshift Serverless workgroup:
	// temporary credentials from redshift-serverless:GetCredentials, for
	// the signing principal's own identity (IAMR:<role>).
	ServiceRedshiftServerless = "redshift-serverless"
)

// redshiftCredentialSeconds is how long temporary credentials are asked
// for; they are reused until a minute before they expire.
const redshiftCredentialSeconds = 900

// dbPassword is a temporary database user and password.
type dbPassword struct {
	user, password string
	validTo        time.Time
}

// redshiftLogin returns the database user and password to log in to a
// Redshift database with, for the client's database user and database
// name, from the cache while they are valid.
func (c *credentials) redshiftLogin(ctx context.Context, base roleRef, db *Database, user, dbName string, endpoints map[string]string) (string, string, error) {
	as := "user:" + user
	if db.IAMIdentity || db.Service == ServiceRedshiftServerless {
		as = "iam" // the login user is the signer's identity, whoever the client says
	}
	key := "redshift|" + db.Service + "|" + db.Cluster + db.Workgroup + "|" + db.Region + "|" + as + "|" + dbName + "|" + base.arn + "|" + db.chainKey()
	v, err := c.cached(ctx, key, func(ctx context.Context) (any, time.Time, error) {
		got, err := c.fetchRedshift(ctx, base, db, user, dbName, endpoints)
		return got, got.validTo, err
	})
	if err != nil {
		return "", "", err
	}
	got := v.(dbPassword)
	return got.user, got.password, nil
}

func (c *credentials) fetchRedshift(ctx context.Context, base roleRef, db *Database, user, dbName string, endpoints map[string]string) (dbPassword, error) {
	cfg := c.base.Copy()
	cfg.Credentials = c.provider(db.chain(base)...)
	cfg.Region = db.Region
	var out dbPassword
	var expires *time.Time
	switch db.Service {
	case ServiceRedshift:
		client := redshift.NewFromConfig(cfg, func(o *redshift.Options) {
			if e := endpoints[ServiceRedshift]; e != "" {
				o.BaseEndpoint = aws.String(e)
			}
		})
		if db.IAMIdentity {
			r, err := client.GetClusterCredentialsWithIAM(ctx, &redshift.GetClusterCredentialsWithIAMInput{ClusterIdentifier: aws.String(db.Cluster),
				DbName: aws.String(dbName), DurationSeconds: aws.Int32(redshiftCredentialSeconds)})
			if err != nil {
				return out, fmt.Errorf("redshift:GetClusterCredentialsWithIAM for cluster %s: %w", db.Cluster, err)
			}
			out.user, out.password, expires = aws.ToString(r.DbUser), aws.ToString(r.DbPassword), r.Expiration
		} else {
			r, err := client.GetClusterCredentials(ctx, &redshift.GetClusterCredentialsInput{ClusterIdentifier: aws.String(db.Cluster), DbUser: aws.String(user),
				DbName: aws.String(dbName), DurationSeconds: aws.Int32(redshiftCredentialSeconds), AutoCreate: aws.Bool(false)})
			if err != nil {
				return out, fmt.Errorf("redshift:GetClusterCredentials for %s on cluster %s: %w", user, db.Cluster, err)
			}
			out.user, out.password, expires = aws.ToString(r.DbUser), aws.ToString(r.DbPassword), r.Expiration
		}
	case ServiceRedshiftServerless:
		client := redshiftserverless.NewFromConfig(cfg, func(o *redshiftserverless.Options) {
			if e := endpoints[ServiceRedshiftServerless]; e != "" {
				o.BaseEndpoint = aws.String(e)
			}
		})
		r, err := client.GetCredentials(ctx, &redshiftserverless.GetCredentialsInput{WorkgroupName: aws.String(db.Workgroup), DbName: aws.String(dbName),
			DurationSeconds: aws.Int32(redshiftCredentialSeconds)})
		if err != nil {
			return out, fmt.Errorf("redshift-serverless:GetCredentials for workgroup %s: %w", db.Workgroup, err)
		}
		out.user, out.password, expires = aws.ToString(r.DbUser), aws.ToString(r.DbPassword), r.Expiration
	default:
		return out, fmt.Errorf("%s is not a Redshift database", db.Name)
	}
	if out.user == "" || out.password == "" {
		return out, fmt.Errorf("the Redshift API gave no database user or password for %s", db.Name)
	}
	out.validTo = c.now().Add(redshiftCredentialSeconds * time.Second)
	if expires != nil {
		out.validTo = *expires
	}
	out.validTo = out.validTo.Add(-time.Minute)
	return out, nil
}

// pgMD5Password is PostgreSQL's md5 answer: "md5" and
// md5(md5(password + user) + salt), in hex.
func pgMD5Password(user, password string, salt []byte) string {
	inner := md5.Sum([]byte(password + user))
	outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt...))
	return "md5" + hex.EncodeToString(outer[:])
}
