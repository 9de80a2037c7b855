package testenv

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
)

// STSRecorder sits in front of moto's STS and tells the test about every
// credential it issues, so the RDS emulator can verify tokens signed with
// chained-role credentials, which it could not look up otherwise.
type STSRecorder struct {
	URL    string
	Issued atomic.Int64
	roles  sync.Map // access key id -> assumed-role ARN
}

// Role returns the assumed-role ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION)
// the access key was issued for, or "".
func (r *STSRecorder) Role(keyID string) string {
	v, _ := r.roles.Load(keyID)
	s, _ := v.(string)
	return s
}

var (
	reAccessKey = regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`)
	reSecret    = regexp.MustCompile(`<SecretAccessKey>([^<]+)</SecretAccessKey>`)
	reSession   = regexp.MustCompile(`<SessionToken>([^<]+)</SessionToken>`)
	reRoleArn   = regexp.MustCompile(`<AssumedRoleUser>[\s\S]*?<Arn>([^<]+)</Arn>`)
)

// StartSTSRecorder forwards to target and calls onCreds for each credential.
func StartSTSRecorder(t T, target string, onCreds func(id, secret, session string)) *STSRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &STSRecorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		id, secret, session := reAccessKey.FindSubmatch(body), reSecret.FindSubmatch(body), reSession.FindSubmatch(body)
		if id != nil && secret != nil {
			tok := ""
			if session != nil {
				tok = string(session[1])
			}
			if arn := reRoleArn.FindSubmatch(body); arn != nil {
				r.roles.Store(string(id[1]), string(arn[1]))
			}
			onCreds(string(id[1]), string(secret[1]), tok)
			r.Issued.Add(1)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}
