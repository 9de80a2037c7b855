package proxyd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rdsgate/rdsgate/proxyd"
	"github.com/rdsgate/rdsgate/proxyd/gatewayclient"
)

// The users' side (package gatewayclient) against a real gateway: what the
// API lists for each person, and a local tunnel that psql and pgx use with
// no password, cancel included.
func TestGatewayClient(t *testing.T) {
	g := proxyd.StartClientGateway(t)
	ctx := context.Background()
	client := func(who string) *gatewayclient.Client {
		c, err := gatewayclient.New(g.API, g.CAFile, awscreds.StaticCredentialsProvider{Value: g.People[who]})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	list := func(who string) string {
		resp, err := client(who).Databases(ctx)
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		var b strings.Builder
		b.WriteString(resp.Identity + ":")
		for _, d := range resp.Databases {
			b.WriteString(" " + d.Name + "(" + d.Protocol + " users=" + strings.Join(d.DBUsers, ",") + " names=" + strings.Join(d.DBNames, ",") + " rules=" + strings.Join(d.Rules, ",") + ")")
		}
		return b.String()
	}
	for who, want := range map[string]string{
		"alice":   "arn:aws:sts::123456789012:assumed-role/data-engineers/alice@example.com: my(mysql users=app names=postgres,shop rules=engineers) pg(postgres users=app names=postgres,shop rules=engineers)",
		"bob":     "arn:aws:iam::123456789012:user/bob:",
		"mallory": "arn:aws:sts::123456789012:assumed-role/contractors/mallory: my(mysql users=app,other names=* rules=contractors)",
	} {
		if got := list(who); got != want {
			t.Errorf("%s lists\n%s\nwant\n%s", who, got, want)
		}
	}
	// An anonymous caller gets nothing.
	c := client("alice")
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS}}).Get(g.API + "/v1/databases")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "prove who you are") {
		t.Fatalf("anonymous listing: %s %s", resp.Status, body)
	}

	tun, err := c.OpenTunnel(ctx, "pg", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	host, tport, _ := net.SplitHostPort(tun.Addr)
	out, err := proxyd.Psql(t, "host="+host+" port="+tport+" user=app dbname=postgres sslmode=disable", "-c", "select current_user, count(*) from items")
	if err != nil || !strings.Contains(out, "app|1000") {
		t.Fatalf("psql through the tunnel: %v %s", err, out)
	}
	conn, err := pgx.Connect(ctx, "postgres://app@"+tun.Addr+"/postgres?sslmode=disable&application_name=tunnel-cancel")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Cancel once the server shows the query running (a cancel that
	// arrives first cancels nothing), seen from the server's own socket.
	watch, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", g.PG.SocketDir, g.PG.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for range 600 {
			var n int
			if err := watch.QueryRow(ctx, "select count(*) from pg_stat_activity where application_name = 'tunnel-cancel' and query like 'select pg_sleep%' and state = 'active'").Scan(&n); err != nil {
				return
			}
			if n == 1 {
				_ = conn.PgConn().CancelRequest(ctx)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, err = conn.Exec(ctx, "select pg_sleep(30)")
	<-polled
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("the query was not cancelled through the tunnel: %v", err)
	}
}
