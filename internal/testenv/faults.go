package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Fault is an error answer in the AWS query protocol (IAM, STS, RDS).
type Fault struct {
	Status  int
	Code    string
	Message string
}

// Common faults.
var (
	Throttled   = &Fault{Status: 400, Code: "Throttling", Message: "Rate exceeded"}
	Unavailable = &Fault{Status: 503, Code: "ServiceUnavailable", Message: "Service is unavailable"}
	Internal    = &Fault{Status: 500, Code: "InternalFailure", Message: "We encountered an internal error"}
	Denied      = &Fault{Status: 403, Code: "AccessDenied", Message: "User is not authorized to perform this action"}
	TooLarge    = &Fault{Status: 409, Code: "LimitExceeded", Message: "Maximum policy size of 10240 bytes exceeded"}
)

// FaultProxy forwards to an AWS emulator and answers some requests with
// faults instead, as Decide says.
type FaultProxy struct {
	URL string
	mu  sync.Mutex
	// Decide gets the operation and how many times it has been seen
	// (counting this one) and returns a fault, or nil to pass it on.
	decide   func(op string, n int) *Fault
	seen     map[string]int
	injected int
	requests []Request
	after    func(op string, status int)
}

// Request is one request that passed the proxy, with its form parameters.
type Request struct {
	Op   string
	Form url.Values
}

// StartFaultProxy starts a proxy in front of target for the test.
func StartFaultProxy(t T, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	fp := &FaultProxy{seen: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		fp.mu.Lock()
		after := fp.after
		fp.mu.Unlock()
		if after != nil {
			after(resp.Request.Header.Get("X-Rdsgate-Op"), resp.StatusCode)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		op := ""
		form, err := url.ParseQuery(string(body))
		if err == nil {
			op = form.Get("Action")
		}
		fp.mu.Lock()
		fp.seen[op]++
		fp.requests = append(fp.requests, Request{Op: op, Form: form})
		var f *Fault
		if fp.decide != nil {
			f = fp.decide(op, fp.seen[op])
		}
		if f != nil {
			fp.injected++
		}
		fp.mu.Unlock()
		if f != nil {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(f.Status)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>rdsgate-fault</RequestId></ErrorResponse>`, f.Code, f.Message)
			return
		}
		r.Header.Set("X-Rdsgate-Op", op)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fp.URL = srv.URL
	return fp
}

// Decide sets the fault rule.
func (fp *FaultProxy) Decide(f func(op string, n int) *Fault) {
	fp.mu.Lock()
	fp.decide = f
	fp.mu.Unlock()
}

// After sets a hook that runs when the emulator has answered a request and
// before the answer goes back: a test can look at the emulator's state
// right after each write, while the caller waits.
func (fp *FaultProxy) After(f func(op string, status int)) {
	fp.mu.Lock()
	fp.after = f
	fp.mu.Unlock()
}

// Injected returns how many faults were answered.
func (fp *FaultProxy) Injected() int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.injected
}

// Requests returns the requests seen so far with the given operation.
func (fp *FaultProxy) Requests(op string) []Request {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	var out []Request
	for _, r := range fp.requests {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}
