package autoproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	rdstypes "github.com/aws/aws-sdk-go-v2/service/rds/types"
	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
	"github.com/rdsgate/rdsgate/test/demo"
	"github.com/rdsgate/rdsgate/test/iamcheck"
	"github.com/rdsgate/rdsgate/test/iamcheck/iamread"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

const (
	region  = "us-east-1"
	baseARN = "arn:aws:iam::" + testenv.AccountID + ":role/rdsgate-proxy"
)

// world is moto as AWS, an STS front that tells the RDS emulators which
// role each key belongs to, and a real PostgreSQL behind an emulator per
// RDS instance registered in moto.
type world struct {
	t      *testing.T
	moto   *testenv.Moto
	front  *testenv.FaultProxy
	sts    *testenv.STSRecorder
	keys   *rdsemu.Keys
	pg     *testenv.Postgres
	aws    *bootstrap.Clients
	bundle string
	emus   map[string]*rdsemu.Server
	// resourceIDs by database name, as RDS (through the front) gives them.
	resourceIDs map[string]string
	emusMu      sync.Mutex
	srv         *proxyd.Server
	logs        *testenv.LockedBuffer
	pconfig     *proxyd.Config
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, keys: &rdsemu.Keys{}, emus: map[string]*rdsemu.Server{}, resourceIDs: map[string]string{}, logs: &testenv.LockedBuffer{}}
	w.moto = testenv.StartMoto(t)
	// moto gives every instance the same resource id: a front gives each
	// its own, as AWS does, and records who called what.
	w.front = testenv.StartFaultProxy(t, w.moto.URL)
	w.front.Rewrite(testenv.DistinctResourceIDs)
	w.keys.Add(testenv.AccessKeyID, testenv.SecretAccessKey, "")
	w.sts = testenv.StartSTSRecorder(t, w.moto.URL, func(id, secret, session string) { w.keys.Add(id, secret, session) })
	var err error
	w.aws, err = bootstrap.Connect(context.Background(), bootstrap.Config{Region: region, EndpointURL: w.front.URL, MaxBackoff: 50 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	w.pg = testenv.StartPostgres(t, testenv.PostgresOptions{})
	w.pg.SQL(t, "postgres", "DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	w.pg.SQL(t, "postgres", "CREATE USER app; GRANT rds_iam TO app")
	w.bundle = w.pg.CA.PEMFile
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + testenv.AccountID + `:root"},"Action":"sts:AssumeRole"}]}`
	if _, err := w.aws.IAM.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String("rdsgate-proxy"), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	return w
}

// addDatabase registers a PostgreSQL instance in moto and puts an RDS
// emulator in front of the real server for it.
func (w *world) addDatabase(name string, iamAuth bool) *rdsemu.Server {
	return w.addDatabaseIn(w.aws, testenv.AccountID, name, name, iamAuth)
}

// addDatabaseIn registers the instance in an account, through clients
// acting in it; its emulator judges logins by that account's IAM. servedAs
// is the proxy's name for it (names two accounts share get the account).
func (w *world) addDatabaseIn(c *bootstrap.Clients, accountID, name, servedAs string, iamAuth bool) *rdsemu.Server {
	t := w.t
	ctx := context.Background()
	api, err := c.RDS(region)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateDBInstance(ctx, &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(name), Engine: aws.String("postgres"),
		EngineVersion: aws.String("15.8"), DBInstanceClass: aws.String("db.t4g.micro"), MasterUsername: aws.String("admin"),
		MasterUserPassword: aws.String("not-used-here"), AllocatedStorage: aws.Int32(20), Port: aws.Int32(5432),
		EnableIAMDatabaseAuthentication: aws.Bool(iamAuth), Tags: []rdstypes.Tag{{Key: aws.String("rdsgate"), Value: aws.String("yes")}}}); err != nil {
		t.Fatal(err)
	}
	info, err := bootstrap.DescribeDatabase(ctx, api, policies.KindInstance, name)
	if err != nil || info == nil {
		t.Fatalf("describing %s: %v", name, err)
	}
	emu := rdsemu.Postgres(t, w.pg, rdsemu.Options{Keys: w.keys, Endpoint: net.JoinHostPort(info.Endpoint, strconv.Itoa(info.Port)),
		Authorize: func(keyID, user string) error {
			return authorizeIn(ctx, c, w.sts, accountID, info.ResourceID, keyID, user)
		}})
	w.emusMu.Lock()
	w.emus[servedAs] = emu
	w.resourceIDs[servedAs] = info.ResourceID
	w.emusMu.Unlock()
	return emu
}

func (w *world) removeDatabase(name string) {
	api, err := w.aws.RDS(region)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := api.DeleteDBInstance(context.Background(), &rds.DeleteDBInstanceInput{DBInstanceIdentifier: aws.String(name), SkipFinalSnapshot: aws.Bool(true)}); err != nil {
		w.t.Fatal(err)
	}
}

// addresses maps each database to its emulator, as a tunnel would.
func (w *world) addresses() map[string]string {
	w.emusMu.Lock()
	defer w.emusMu.Unlock()
	out := map[string]string{}
	for name, e := range w.emus {
		out[name] = e.Address
	}
	return out
}

func (w *world) start(auto *proxyd.Auto) {
	t := w.t
	auto.Addresses = w.addresses()
	w.pconfig = &proxyd.Config{Region: region, CABundle: w.bundle, HealthAddress: "127.0.0.1:0", AssumeRoleARN: baseARN, Auto: auto,
		DialTimeout: proxyd.Duration(5 * time.Second)}
	cycle, err := New(context.Background(), w.pconfig, bootstrap.Config{Region: region, EndpointURL: w.front.URL, Endpoints: bootstrap.Endpoints{STS: w.sts.URL},
		MaxBackoff: 50 * time.Millisecond, LeaseSettle: 10 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	awsCfg := aws.Config{Region: region, BaseEndpoint: aws.String(w.sts.URL),
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")}
	w.srv, err = proxyd.New(context.Background(), w.pconfig, proxyd.WithLogger(logger), proxyd.WithAWSConfig(awsCfg), proxyd.WithAutomatic(cycle.Run))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.srv.Close()
		if t.Failed() {
			t.Logf("proxy log:\n%s", w.logs.String())
		}
	})
}

// reloadAddresses tells the running proxy where a new database's emulator
// is, as an operator edits the file and sends SIGHUP.
func (w *world) reloadAddresses() {
	cfg := *w.pconfig
	auto := *cfg.Auto
	auto.Addresses = w.addresses()
	cfg.Auto = &auto
	cfg.Databases = nil
	if _, err := w.srv.Reload(&cfg); err != nil {
		w.t.Fatal(err)
	}
}

// cycleAfter waits for a cycle that started after since to end, and
// returns its status.
func (w *world) cycleAfter(since time.Time) proxyd.AutoStatus {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		st := w.srv.AutoStatus()
		if st.LastStart.After(since) && !st.LastEnd.Before(st.LastStart) {
			return st
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("no cycle ended after %s: %+v\n%s", since.Format(time.RFC3339Nano), st, w.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *world) query(ctx context.Context, name string) error {
	host, port, _ := net.SplitHostPort(w.srv.Addr(name))
	if host == "" {
		return fmt.Errorf("no listener for %s", name)
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=app dbname=postgres sslmode=disable", host, port))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "select 1").Scan(&one)
}

// TestAutomaticMode: the proxy finds databases in moto, writes its own
// connect shards (the base role's other policies leave room for one
// database inline, so the rest go to shard roles), and serves them. A
// database added to moto (with IAM authentication off, which the proxy
// turns on) is served within a cycle or two after it appears; one removed
// stops being served; through all of it a client of another database
// never fails, and the listeners that stay keep their ports.
func TestAutomaticMode(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	// Other policies of the base role: most of its inline budget.
	filler := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:PutLogEvents","Resource":"arn:aws:logs:us-east-1:123456789012:log-group:` +
		strings.Repeat("x", 9900) + `"}]}`
	if _, err := w.aws.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String("logs"),
		PolicyDocument: aws.String(filler)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"orders", "ledger", "users"} {
		w.addDatabase(name, true)
	}
	start := time.Now()
	w.start(&proxyd.Auto{Interval: proxyd.Duration(proxyd.MinAutoInterval), Tags: map[string]string{"rdsgate": "yes"}, EnableIAMAuth: true, FirstPort: freeBase(t)})
	st := w.cycleAfter(start.Add(-time.Second))
	if st.Error != "" || st.Databases != 3 {
		t.Fatalf("first cycle: %+v", st)
	}
	for _, name := range []string{"orders", "ledger", "users"} {
		if err := w.query(ctx, name); err != nil {
			t.Fatalf("%s after the first cycle: %v (emulator: %s)", name, err, w.emus[name].LastRefusal())
		}
	}
	ports := map[string]string{}
	for _, name := range []string{"orders", "users"} {
		ports[name] = w.srv.Addr(name)
	}

	// A session of users held open through every change below.
	held, err := pgx.Connect(ctx, "host=127.0.0.1 port="+strings.Split(w.srv.Addr("users"), ":")[1]+" user=app dbname=postgres sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)

	// A cycle that fails (RDS throttles discovery past its retries) keeps
	// what was served, and says so; the next one recovers.
	w.front.Decide(func(op string, n int) *testenv.Fault {
		if op == "DescribeDBInstances" {
			return &testenv.Fault{Status: 400, Code: "Throttling", Message: "Rate exceeded"}
		}
		return nil
	})
	st = w.cycleAfter(time.Now())
	if st.Error == "" || st.Failures == 0 || !strings.Contains(st.Error, "Throttling") || w.srv.Addr("orders") == "" {
		t.Fatalf("a cycle whose discovery failed: %+v", st)
	}
	if err := w.query(ctx, "orders"); err != nil {
		t.Fatalf("orders after a failed cycle: %v", err)
	}
	w.front.Decide(nil)

	// A client of orders that must never fail while the fleet changes.
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			if err := w.query(qctx, "orders"); err != nil {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
			cancel()
		}
	}()

	// Added with IAM authentication on: served by the first cycle that
	// starts after it appears, so within one interval. Added with it off:
	// the proxy turns it on, and serves it once RDS shows it on.
	w.addDatabase("payments", true)
	w.addDatabase("invoices", false)
	w.reloadAddresses()
	added := time.Now()
	st = w.cycleAfter(added)
	if st.Error != "" || w.srv.Addr("payments") == "" || w.srv.Addr("invoices") != "" {
		t.Fatalf("the first cycle after payments appeared: %+v, listeners %q %q", st, w.srv.Addr("payments"), w.srv.Addr("invoices"))
	}
	if err := w.query(ctx, "payments"); err != nil {
		t.Fatalf("payments, within one interval: %v (emulator: %s)", err, w.emus["payments"].LastRefusal())
	}
	if !strings.Contains(strings.Join(st.Report.Enabled, ","), "invoices") {
		t.Fatalf("the cycle after invoices appeared did not enable IAM authentication on it: %+v", st)
	}
	st = w.cycleAfter(st.LastEnd)
	if st.Error != "" || st.Databases != 5 {
		t.Fatalf("the cycle after IAM authentication was on: %+v", st)
	}
	if err := w.query(ctx, "invoices"); err != nil {
		t.Fatalf("invoices: %v (emulator: %s)", err, w.emus["invoices"].LastRefusal())
	}

	// Removed.
	w.removeDatabase("ledger")
	st = w.cycleAfter(time.Now())
	if st.Error != "" || st.Databases != 4 || w.srv.Addr("ledger") != "" {
		t.Fatalf("after ledger was removed: %+v, listener %q", st, w.srv.Addr("ledger"))
	}
	close(stop)
	wg.Wait()
	var one int
	if err := held.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Fatalf("the session held open through the changes: %v", err)
	}
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Fatalf("orders through the changes: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstFailure.Load())
	}
	for name, addr := range ports {
		if got := w.srv.Addr(name); got != addr {
			t.Errorf("%s moved from %s to %s", name, addr, got)
		}
	}
	// What IAM holds, judged by the independent model: the served
	// databases' permission, and no longer the removed one's.
	world, err := iamread.ReadPrincipal(ctx, w.aws.IAM, "role", "rdsgate-proxy")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"orders": true, "users": true, "invoices": true, "payments": true, "ledger": false} {
		arn := policies.DBUserARN{Partition: "aws", Region: region, AccountID: testenv.AccountID, ResourceID: w.resourceIDs[name], DBUser: "app"}.String()
		if got := world.Allows(world.Base, "rds-db:connect", arn); got != want {
			t.Errorf("IAM allows rds-db:connect on %s (%s): %v, want %v", name, arn, got, want)
		}
	}
	// Every IAM write the proxy made, as its base role, is one the policy
	// and boundary print-iam gives that role allow (judged by iamcheck).
	bp, err := policies.NewBootstrapPolicy(policies.BootstrapOptions{Types: []string{"rds", "rds-proxy"}, Kind: policies.PrincipalRole, Name: "rdsgate-proxy",
		Path: "/", AccountID: testenv.AccountID, Partition: "aws"})
	if err != nil {
		t.Fatal(err)
	}
	identity, boundary := bp.Policy.String(), bp.Boundary.String()
	writes := 0
	for _, r := range w.front.All() {
		if !strings.Contains(w.sts.Role(r.KeyID), ":assumed-role/rdsgate-proxy/") || !iamWrite(r.Op) {
			continue
		}
		writes++
		keys := map[string]string{}
		if arn := r.Form.Get("PolicyArn"); arn != "" {
			keys["iam:policyarn"] = arn
		}
		for _, res := range iamResources(r) {
			if !iamcheck.AllowsRequest([]string{identity}, boundary, "iam:"+r.Op, res, keys) {
				t.Errorf("the proxy called iam:%s on %s, which print-iam's policy and boundary do not allow", r.Op, res)
			}
		}
	}
	if writes == 0 {
		for _, r := range w.front.All() {
			t.Logf("%s %s %q", r.Op, r.KeyID, w.sts.Role(r.KeyID))
		}
		t.Fatal("the front saw no IAM write by the proxy's role")
	}
	// /automatic and /metrics tell the same story.
	resp, err := http.Get("http://" + w.srv.HealthAddr() + "/automatic")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var shown proxyd.AutoStatus
	if err := json.NewDecoder(resp.Body).Decode(&shown); err != nil || shown.Databases != 4 || shown.Cycles < 5 || shown.Failures != 1 || shown.Error != "" {
		t.Fatalf("/automatic: %v %+v", err, shown)
	}
	resp2, err := http.Get("http://" + w.srv.HealthAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	metrics, _ := io.ReadAll(resp2.Body)
	for _, want := range []string{"rdsgate_auto_databases 4", `rdsgate_auto_cycles_total{result="ok"}`, "rdsgate_auto_iam_auth_enabled_total 1"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// freeBase is a first port below the ephemeral range, away from other
// tests; the proxy steps over ports that others hold.
func freeBase(t *testing.T) int {
	return 20000 + int(time.Now().UnixNano()%10000)
}

// iamWrite reports whether an IAM operation changes anything.
func iamWrite(op string) bool {
	for _, p := range []string{"Create", "Delete", "Put", "Attach", "Detach", "Tag", "Untag", "Update", "Set"} {
		if strings.HasPrefix(op, p) {
			return true
		}
	}
	return false
}

// iamResources are the ARNs an IAM request acts on.
func iamResources(r testenv.Request) []string {
	acct := "arn:aws:iam::" + testenv.AccountID + ":"
	var out []string
	if arn := r.Form.Get("PolicyArn"); arn != "" && !strings.HasSuffix(r.Op, "RolePolicy") {
		out = append(out, arn) // attaching acts on the role, with the policy as a condition key
	}
	if name := r.Form.Get("RoleName"); name != "" {
		path := r.Form.Get("Path")
		if path == "" {
			path = "/"
			if name != "rdsgate-proxy" {
				path = "/rdsgate/rdsgate-proxy/"
			}
		}
		out = append(out, acct+"role"+path+name)
	}
	if r.Op == "CreatePolicy" {
		path := r.Form.Get("Path")
		if path == "" {
			path = "/"
		}
		out = append(out, acct+"policy"+path+r.Form.Get("PolicyName"))
	}
	return out
}

// authorizeIn is the emulated RDS's IAM check in an account: the key must
// belong to a role session of that account, and the role's policies, as
// moto holds them there and as iamcheck judges them, must allow
// rds-db:connect on the database user's ARN.
func authorizeIn(ctx context.Context, c *bootstrap.Clients, sts *testenv.STSRecorder, accountID, resourceID, keyID, user string) error {
	if accountID == testenv.AccountID {
		return demo.Authorize(ctx, c, sts, resourceID, keyID, user)
	}
	assumed := sts.Role(keyID)
	if !strings.Contains(assumed, "::"+accountID+":assumed-role/") {
		return fmt.Errorf("access key %s is not a role session of account %s (%q)", keyID, accountID, assumed)
	}
	role, _, _ := strings.Cut(strings.SplitN(assumed, ":assumed-role/", 2)[1], "/")
	w, err := iamread.ReadPrincipal(ctx, c.IAM, "role", role)
	if err != nil {
		return err
	}
	arn := policies.DBUserARN{Partition: "aws", Region: region, AccountID: accountID, ResourceID: resourceID, DBUser: user}.String()
	if !w.Allows(w.Base, "rds-db:connect", arn) {
		return fmt.Errorf("%s may not rds-db:connect to %s", w.Base, arn)
	}
	return nil
}

// TestAutomaticModeAccounts: with two accounts listed, the proxy assumes
// each account's role from its own, manages that role's connect shards in
// that account, and reaches each account's databases through its role
// (the emulators judge every login by the IAM of the database's own
// account). Names both accounts use get the account id.
func TestAutomaticModeAccounts(t *testing.T) {
	t.Parallel()
	const other = "210987654321"
	otherRole := "arn:aws:iam::" + other + ":role/rdsgate-proxy"
	w := newWorld(t)
	ctx := context.Background()
	// Clients acting in the other account, as its administrator would.
	admin, err := bootstrap.Connect(ctx, bootstrap.Config{Region: region, EndpointURL: w.front.URL, Endpoints: bootstrap.Endpoints{STS: w.sts.URL},
		MaxBackoff: 50 * time.Millisecond, Credentials: aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(w.aws.STS, "arn:aws:iam::"+other+":role/admin"))})
	if err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + baseARN + `"},"Action":"sts:AssumeRole"}]}`
	if _, err := admin.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("rdsgate-proxy"), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	w.addDatabaseIn(w.aws, testenv.AccountID, "orders", "orders-"+testenv.AccountID, true)
	w.addDatabaseIn(admin, other, "ledger", "ledger", true)
	w.addDatabaseIn(admin, other, "orders", "orders-"+other, true) // a name both accounts use
	start := time.Now()
	w.start(&proxyd.Auto{Interval: proxyd.Duration(proxyd.MinAutoInterval), Tags: map[string]string{"rdsgate": "yes"}, FirstPort: freeBase(t),
		Accounts: []proxyd.AutoAccount{{AssumeRoleARN: baseARN}, {AssumeRoleARN: otherRole}}})
	st := w.cycleAfter(start.Add(-time.Second))
	if st.Error != "" || st.Databases != 3 {
		t.Fatalf("first cycle: %+v", st)
	}
	for _, name := range []string{"orders-" + testenv.AccountID, "orders-" + other, "ledger"} {
		if err := w.query(ctx, name); err != nil {
			t.Errorf("%s: %v (emulator: %s)", name, err, w.emus[name].LastRefusal())
		}
	}
	// Each account's role holds its own databases' permission, and only those.
	for _, c := range []struct {
		clients *bootstrap.Clients
		account string
		name    string
		want    bool
	}{{w.aws, testenv.AccountID, "ledger", false}, {admin, other, "ledger", true}} {
		pw, err := iamread.ReadPrincipal(ctx, c.clients.IAM, "role", "rdsgate-proxy")
		if err != nil {
			t.Fatal(err)
		}
		arn := policies.DBUserARN{Partition: "aws", Region: region, AccountID: c.account, ResourceID: w.resourceIDs[c.name], DBUser: "app"}.String()
		if got := pw.Allows(pw.Base, "rds-db:connect", arn); got != c.want {
			t.Errorf("account %s's rdsgate-proxy allows %s: %v, want %v", c.account, arn, got, c.want)
		}
	}
}
