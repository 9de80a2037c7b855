package rdsemu

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// RedshiftCredentials are the temporary database credentials the emulated
// Redshift APIs issued, which the emulated Redshift endpoints accept until
// they expire, as Redshift does.
type RedshiftCredentials struct {
	mu     sync.Mutex
	issued map[string][]issuedPassword // database user -> passwords
	// Now is the clock (default time.Now).
	Now func() time.Time
}

type issuedPassword struct {
	password string
	expires  time.Time
}

func (c *RedshiftCredentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Issue makes a password for a database user, valid for ttl.
func (c *RedshiftCredentials) Issue(dbUser string, ttl time.Duration) (string, time.Time) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	pw := hex.EncodeToString(b)
	exp := c.now().Add(ttl).Truncate(time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issued == nil {
		c.issued = map[string][]issuedPassword{}
	}
	c.issued[dbUser] = append(c.issued[dbUser], issuedPassword{pw, exp})
	return pw, exp
}

// checkMD5 reports whether answer is PostgreSQL's md5 answer for one of the
// user's passwords that has not expired.
func (c *RedshiftCredentials) checkMD5(dbUser, answer string, salt []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.issued[dbUser]
	if len(list) == 0 {
		return fmt.Errorf("no credentials were issued for %s", dbUser)
	}
	for _, p := range list {
		inner := md5.Sum([]byte(p.password + dbUser))
		outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt...))
		if answer == "md5"+hex.EncodeToString(outer[:]) {
			if c.now().After(p.expires) {
				return fmt.Errorf("the credentials of %s expired at %s", dbUser, p.expires.Format(time.RFC3339))
			}
			return nil
		}
	}
	return fmt.Errorf("wrong password for %s", dbUser)
}

// RedshiftAPI emulates the two APIs that issue Redshift credentials:
// redshift (query protocol: GetClusterCredentials,
// GetClusterCredentialsWithIAM) and redshift-serverless (JSON:
// GetCredentials). moto 5.2.1 has neither GetClusterCredentialsWithIAM nor
// Redshift Serverless.
type RedshiftAPI struct {
	URL   string
	creds *RedshiftCredentials
	// who names the caller of an access key: the assumed-role ARN STS
	// issued it for.
	who        func(keyID string) string
	clusters   map[string]bool
	workgroups map[string]bool
	// Calls counts the credential requests answered.
	Calls atomic.Int64
	// Authorize, when set, decides whether the caller (an assumed-role
	// ARN) may get credentials for the database user, as IAM does.
	Authorize func(caller, action, dbUser string) error
	// WorkgroupTags are the workgroups' tags, for discovery.
	WorkgroupTags map[string]map[string]string
}

// StartRedshiftAPI serves the Redshift credential APIs for the given
// clusters and workgroups until the test ends.
func StartRedshiftAPI(t testenv.T, creds *RedshiftCredentials, who func(keyID string) string, clusters, workgroups []string) *RedshiftAPI {
	t.Helper()
	a := &RedshiftAPI{creds: creds, who: who, clusters: map[string]bool{}, workgroups: map[string]bool{}}
	for _, c := range clusters {
		a.clusters[c] = true
	}
	for _, w := range workgroups {
		a.workgroups[w] = true
	}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// roleName is the role of an assumed-role ARN, or the user of a user ARN.
func roleName(arn string) string {
	_, rest, _ := strings.Cut(arn, ":assumed-role/")
	if rest != "" {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	if i := strings.LastIndexByte(arn, '/'); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

func (a *RedshiftAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	caller := a.who(testenv.SigningKey(r.Header.Get("Authorization")))
	if caller == "" {
		http.Error(w, `{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}`, http.StatusForbidden)
		return
	}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		a.serverless(w, target, body, caller)
		return
	}
	form, _ := url.ParseQuery(string(body))
	action, cluster := form.Get("Action"), form.Get("ClusterIdentifier")
	fail := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>emu</RequestId></ErrorResponse>`, code, msg)
	}
	if !a.clusters[cluster] {
		fail(404, "ClusterNotFound", "Cluster "+cluster+" not found.")
		return
	}
	var dbUser string
	switch action {
	case "GetClusterCredentials":
		dbUser = "IAM:" + form.Get("DbUser")
	case "GetClusterCredentialsWithIAM":
		dbUser = "IAMR:" + roleName(caller)
	default:
		fail(400, "InvalidAction", "the emulator does not answer "+action)
		return
	}
	if a.Authorize != nil {
		if err := a.Authorize(caller, "redshift:"+action, dbUser); err != nil {
			fail(403, "AccessDenied", err.Error())
			return
		}
	}
	ttl := 900 * time.Second
	if s := form.Get("DurationSeconds"); s != "" {
		n, _ := strconv.Atoi(s)
		ttl = time.Duration(n) * time.Second
	}
	pw, exp := a.creds.Issue(dbUser, ttl)
	a.Calls.Add(1)
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%[1]sResponse xmlns="http://redshift.amazonaws.com/doc/2012-12-01/"><%[1]sResult><DbUser>%[2]s</DbUser><DbPassword>%[3]s</DbPassword>`+
		`<Expiration>%[4]s</Expiration></%[1]sResult><ResponseMetadata><RequestId>emu</RequestId></ResponseMetadata></%[1]sResponse>`,
		action, dbUser, pw, exp.UTC().Format(time.RFC3339))
}

func (a *RedshiftAPI) serverless(w http.ResponseWriter, target string, body []byte, caller string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	fail := func(code, msg string) {
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
	}
	switch target {
	case "RedshiftServerless.GetCredentials":
	case "RedshiftServerless.ListWorkgroups":
		var list []map[string]any
		for _, name := range slices.Sorted(maps.Keys(a.workgroups)) {
			list = append(list, map[string]any{"workgroupName": name, "workgroupArn": "arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/" + name,
				"status": "AVAILABLE", "endpoint": map[string]any{"address": name + ".123456789012.us-east-1.redshift-serverless.amazonaws.com", "port": 5439}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"workgroups": list})
		return
	case "RedshiftServerless.ListTagsForResource":
		var in struct {
			ResourceArn string `json:"resourceArn"`
		}
		_ = json.Unmarshal(body, &in)
		name := in.ResourceArn[strings.LastIndexByte(in.ResourceArn, '/')+1:]
		tags := []map[string]string{}
		for k, v := range a.WorkgroupTags[name] {
			tags = append(tags, map[string]string{"key": k, "value": v})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tags": tags})
		return
	default:
		fail("UnknownOperationException", "the emulator does not answer "+target)
		return
	}
	var in struct {
		WorkgroupName   string `json:"workgroupName"`
		DurationSeconds int    `json:"durationSeconds"`
	}
	if err := json.Unmarshal(body, &in); err != nil || !a.workgroups[in.WorkgroupName] {
		fail("ResourceNotFoundException", "workgroup "+in.WorkgroupName+" not found")
		return
	}
	dbUser := "IAMR:" + roleName(caller)
	if a.Authorize != nil {
		if err := a.Authorize(caller, "redshift-serverless:GetCredentials", dbUser); err != nil {
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "AccessDeniedException", "message": err.Error()})
			return
		}
	}
	ttl := time.Duration(max(in.DurationSeconds, 900)) * time.Second
	pw, exp := a.creds.Issue(dbUser, ttl)
	a.Calls.Add(1)
	_ = json.NewEncoder(w).Encode(map[string]any{"dbUser": dbUser, "dbPassword": pw, "expiration": exp.Unix(), "nextRefreshTime": exp.Add(-10 * time.Minute).Unix()})
}

// Redshift starts an emulated Redshift endpoint (a cluster or a serverless
// workgroup) in front of pg: it asks for an md5 password, as Redshift does,
// accepts the temporary credentials creds holds, and logs in to pg as the
// database user they name (IAM:app as app; IAMR:role as is).
func Redshift(t testenv.T, pg *testenv.Postgres, creds *RedshiftCredentials, o Options) *Server {
	t.Helper()
	s := newServer(t, pg.CA, o)
	socket := filepath.Join(pg.SocketDir, ".s.PGSQL."+strconv.Itoa(pg.Port))
	s.handle = func(c net.Conn) { s.serveRedshift(c, socket, creds) }
	s.serve()
	return s
}

func (s *Server) serveRedshift(client net.Conn, socket string, creds *RedshiftCredentials) {
	conn, startup, ok := s.startPostgres(client, socket)
	if !ok {
		return
	}
	user := startup.Parameters["user"]
	salt := make([]byte, 4)
	_, _ = rand.Read(salt)
	br, pw, ok := askPassword(conn, &pgproto3.AuthenticationMD5Password{Salt: [4]byte(salt)})
	if !ok {
		return
	}
	if err := creds.checkMD5(user, pw, salt); err != nil {
		s.refuse(err)
		pgFatal(conn, "28000", fmt.Sprintf(`password authentication failed for user "%s"`, user))
		return
	}
	inner := strings.TrimPrefix(user, "IAM:")
	startup.Parameters["user"] = inner
	s.loginAndRelay(conn, br, startup, socket, inner)
}
