package rdsemu

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// VerifyPresigned checks a SigV4 presigned request as AWS does: the
// credential scope's service, the signing time and lifetime, the access key
// and session token, and the signature over the method, path, query and
// every signed header as the request carries it. It returns the access key.
func VerifyPresigned(r *http.Request, keys *Keys, service string, now time.Time) (string, error) {
	q := r.URL.Query()
	get := q.Get
	if get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" {
		return "", fmt.Errorf("algorithm %q", get("X-Amz-Algorithm"))
	}
	cred := strings.Split(get("X-Amz-Credential"), "/")
	if len(cred) != 5 || cred[3] != service || cred[4] != "aws4_request" {
		return "", fmt.Errorf("credential scope %q is not for %s", get("X-Amz-Credential"), service)
	}
	signed, err := time.Parse("20060102T150405Z", get("X-Amz-Date"))
	if err != nil || cred[1] != get("X-Amz-Date")[:8] {
		return "", fmt.Errorf("date %q", get("X-Amz-Date"))
	}
	expires, err := strconv.Atoi(get("X-Amz-Expires"))
	if err != nil || expires <= 0 || expires > 604800 {
		return "", fmt.Errorf("expires %q", get("X-Amz-Expires"))
	}
	if now.After(signed.Add(time.Duration(expires) * time.Second)) {
		return "", fmt.Errorf("request has expired")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	header := func(h string) string {
		if h == "host" {
			return r.Host
		}
		return r.Header.Get(h)
	}
	if err := checkSigned(keys, q, cred, path, header); err != nil {
		return "", err
	}
	return cred[0], nil
}

// STS is an emulated sts:GetCallerIdentity that checks presigned requests'
// signatures, signed headers included, the way STS does; moto does not.
type STS struct {
	URL string
	// Calls counts requests; Refused those refused.
	Calls, Refused atomic.Int64
}

// StartSTS serves GetCallerIdentity for callers whose keys are in keys;
// who names the ARN behind an access key.
func StartSTS(t testenv.T, keys *Keys, who func(keyID string) string, now func() time.Time) *STS {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	s := &STS{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Calls.Add(1)
		fail := func(code, msg string) {
			s.Refused.Add(1)
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error></ErrorResponse>", code, msg)
		}
		if r.Method != http.MethodGet || r.URL.Query().Get("Action") != "GetCallerIdentity" {
			fail("InvalidAction", "only GetCallerIdentity")
			return
		}
		keyID, err := VerifyPresigned(r, keys, "sts", now())
		if err != nil {
			code := "SignatureDoesNotMatch"
			if strings.Contains(err.Error(), "expired") {
				code = "ExpiredToken"
			}
			fail(code, url.QueryEscape(err.Error()))
			return
		}
		arn := who(keyID)
		if arn == "" {
			fail("InvalidClientTokenId", "unknown caller")
			return
		}
		account := strings.SplitN(arn, ":", 6)[4]
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`,
			arn, keyID, account)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}
