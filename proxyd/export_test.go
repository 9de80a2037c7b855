package proxyd

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// ClientGateway is a running IAM gateway for the tests of the users' side
// (package gatewayclient, tested from package proxyd_test here, since this
// package's test helpers are not importable): the API's URL, the CA that
// verifies it, each person's credentials, and the PostgreSQL server behind
// database "pg".
type ClientGateway struct {
	API    string
	CAFile string
	People map[string]aws.Credentials
	PG     *testenv.Postgres
}

// StartClientGateway starts the gateway of the IAM tests (rules in
// newIAMEnv: alice may reach pg and my as app).
func StartClientGateway(t *testing.T) *ClientGateway {
	g := newIAMEnv(t)
	_, port := splitAddr(t, g.srv.APIAddr())
	return &ClientGateway{API: "https://localhost:" + port, CAFile: g.serverCA.PEMFile, People: g.people, PG: g.pg}
}

// Psql runs the real psql client.
func Psql(t *testing.T, dsn string, args ...string) (string, error) { return psql(t, dsn, args...) }
