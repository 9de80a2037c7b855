package proxyd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// bundleServer serves a CA bundle the way truststore.pki.rds.amazonaws.com
// does (Last-Modified, 304 to If-Modified-Since), and counts requests.
type bundleServer struct {
	mu       sync.Mutex
	body     []byte
	modified time.Time
	status   int
	requests int
}

func (b *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	if b.status != 0 {
		http.Error(w, "<html>gone</html>", b.status)
		return
	}
	http.ServeContent(w, r, "global-bundle.pem", b.modified, strings.NewReader(string(b.body)))
}

func (b *bundleServer) set(body []byte, modified time.Time, status int) {
	b.mu.Lock()
	b.body, b.modified, b.status = body, modified, status
	b.mu.Unlock()
}

func (b *bundleServer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

func TestFetchCABundle(t *testing.T) {
	dir := t.TempDir()
	var bundle []byte
	for _, name := range []string{"a", "b", "c"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "b"} {
		data, err := os.ReadFile(testenv.NewCA(t, filepath.Join(dir, name)).PEMFile)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, data...)
	}
	other := testenv.NewCA(t, filepath.Join(dir, "c"))
	leafFile, _ := other.Issue(t, "db.example.com", false, "db.example.com")
	leaf, _ := os.ReadFile(leafFile)

	srv := &bundleServer{}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	srv.set(bundle, start, 0)
	ts := httptest.NewTLSServer(srv)
	defer ts.Close()
	path := filepath.Join(dir, "global-bundle.pem")
	now := start.Add(time.Hour)
	fetch := func(maxAge time.Duration, sha string) (*CABundleResult, error) {
		return FetchCABundle(context.Background(), CABundleFetch{URL: ts.URL + "/global/global-bundle.pem", Path: path, MaxAge: maxAge, SHA256: sha,
			Client: ts.Client(), Now: func() time.Time { return now }})
	}

	res, err := fetch(24*time.Hour, "")
	if err != nil || res.Status != "downloaded" || res.Certificates != 2 || len(res.SHA256) != 64 {
		t.Fatalf("first fetch: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(bundle) {
		t.Fatal("the file is not what the server sent")
	}
	sum := res.SHA256

	// Young enough: kept without a request.
	before := srv.count()
	_ = os.Chtimes(path, now, now)
	if res, err := fetch(24*time.Hour, ""); err != nil || res.Status != "fresh" || srv.count() != before {
		t.Fatalf("fresh: %+v %v, %d requests", res, err, srv.count()-before)
	}
	// Older: revalidated, and the server says it has not changed.
	now = now.Add(48 * time.Hour)
	if res, err := fetch(24*time.Hour, ""); err != nil || res.Status != "unchanged" || srv.count() != before+1 {
		t.Fatalf("revalidate: %+v %v", res, err)
	}
	// A pinned digest is checked on a download.
	if res, err := fetch(0, strings.ToUpper(sum)); err != nil || res.Status != "downloaded" {
		t.Fatalf("pinned: %+v %v", res, err)
	}
	if _, err := fetch(0, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "its SHA-256 is "+sum) {
		t.Fatalf("wrong pin: %v", err)
	}

	// What is not a bundle of CAs never replaces the one there.
	for name, c := range map[string]struct {
		body   []byte
		status int
		want   string
	}{
		"an error page":  {nil, http.StatusNotFound, "the server answered 404 Not Found"},
		"an HTML page":   {[]byte("<html>maintenance</html>"), 0, "text after the last PEM block"},
		"a leaf":         {append(append([]byte(nil), bundle...), leaf...), 0, "certificate 3 (CN=db.example.com,O=rdsgate tests) is not a certificate authority"},
		"a private key":  {[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0, "PEM block 1 is a PRIVATE KEY"},
		"an empty reply": {[]byte{}, 0, "no PEM certificates"},
	} {
		now = now.Add(time.Hour)
		srv.set(c.body, now, c.status)
		_, err := fetch(0, "")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), ts.URL+"/global/global-bundle.pem") {
			t.Errorf("%s: %v, want %q and the URL", name, err, c.want)
		}
		if got, _ := os.ReadFile(path); string(got) != string(bundle) {
			t.Fatalf("%s replaced the bundle", name)
		}
	}
}

// TestUnverifiedDatabaseIsRefused: a database whose certificate the bundle
// does not vouch for is never logged into (no token is sent), and the
// refusal names the bundle, where the RDS one comes from, and the command.
func TestUnverifiedDatabaseIsRefused(t *testing.T) {
	t.Parallel()
	stranger := filepath.Join(t.TempDir(), "other")
	if err := os.Mkdir(stranger, 0o755); err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCA(t, stranger).PEMFile
	e := newEnv(t, func(e *env, c *Config) { c.CABundle = other })
	out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1")
	if err == nil {
		t.Fatalf("psql reached a database the bundle does not vouch for: %s", out)
	}
	want := "does not verify against ca_bundle " + other
	if !strings.Contains(out, want) || !strings.Contains(out, RDSCABundleURL) || !strings.Contains(out, "rdsgate proxy ca-bundle --output "+other) {
		t.Fatalf("psql says %q, want %q, the URL and the command", out, want)
	}
	if n := e.pgEmu.Accepted.Load(); n != 0 {
		t.Fatalf("the emulated RDS accepted %d logins", n)
	}
}
