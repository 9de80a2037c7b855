package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rdsgate/rdsgate/proxyd"
)

// tokenMaterial is what must never be printed or logged: identity tokens
// in any form (whole, cut, base64 of the presigned URL), presigned
// requests, and the keys that sign them.
var tokenMaterial = regexp.MustCompile(`(?i)rdsgate-iam-v1|x-amz-(signature|credential|security-token)|aHR0c[A-Za-z0-9_-]{8}|alice-secret|alice-session|gateway-secret`)

// TestNoTokenMaterialInAnyOutput breaks the gateway's view of STS every way
// it breaks in practice and sends tokens where they do not belong, then
// reads every output stream of every users' command, the gateway's log,
// its audit trail and its metrics for token material.
func TestNoTokenMaterialInAnyOutput(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + ln.Addr().String()
	ln.Close()
	// An STS that fails and echoes the request it got, as a proxy in
	// front of it might.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, `<ErrorResponse><Error><Code>Upstream</Code><Message>%s</Message></Error></ErrorResponse>`, r.URL.String())
	}))
	defer echo.Close()
	for _, mode := range []struct{ name, sts string }{{"STS unreachable", unreachable}, {"STS failing and echoing", echo.URL}} {
		t.Run(mode.name, func(t *testing.T) {
			g := startCLIGateway(t, mode.sts)
			check := func(what, out string) {
				t.Helper()
				if m := tokenMaterial.FindString(out); m != "" {
					t.Errorf("%s holds token material %q:\n%s", what, m, out)
				}
			}
			for _, args := range [][]string{
				{"db", "ls"}, {"db", "ls", "--format", "json"},
				{"db", "env", "orders", "--db-name", "postgres"}, {"db", "env", "orders", "--db-name", "postgres", "--format", "json"},
				{"db", "connect", "orders", "--db-name", "postgres", "--", "-X", "-c", "select 1"},
				{"db", "connect", "shop", "--db-name", "shop", "--", "-e", "select 1"},
			} {
				out, code := g.rdsgate(t, args...)
				if code == 0 {
					t.Errorf("rdsgate %s succeeded while the gateway cannot check identities:\n%s", strings.Join(args, " "), out)
				}
				check("rdsgate "+strings.Join(args, " "), out)
			}
			// A token where it does not belong: as the user name, as the
			// database name, as a password the gateway cannot check.
			token, err := proxyd.IdentityToken(context.Background(), aws.Credentials{AccessKeyID: "ASIAALICE", SecretAccessKey: "alice-secret", SessionToken: "alice-session"},
				"us-east-1", mode.sts, "cli-test", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(g.srv.Addr("gateway-postgres"))
			for _, dsn := range []string{
				"user=" + token + " dbname=orders/postgres password=x",
				"user=app dbname=" + token + " password=x",
				"user=app dbname=orders/postgres password=" + token,
			} {
				psql := runTool(t, "psql", "-X", "-c", "select 1", "host=127.0.0.1 port="+port+" sslmode=require connect_timeout=10 "+dsn)
				check("psql with a token out of place", strings.ReplaceAll(psql, token, "(the token psql was given)"))
			}
			check("the gateway's log", g.logs.String())
			audit, _ := os.ReadFile(g.audit)
			check("the audit trail", string(audit))
			if len(audit) == 0 {
				t.Error("the audit trail is empty: the denials were not recorded")
			}
			resp, err := http.Get("http://" + g.srv.HealthAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			check("the metrics", string(metrics))
			if !strings.Contains(g.logs.String(), "cannot check an identity token with STS") {
				t.Error("the gateway's log does not say STS could not be reached")
			}
		})
	}
}

// runTool runs a client program and returns what it printed.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out)
}
