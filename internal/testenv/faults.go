package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
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
	decideOn func(op string, form url.Values) *Fault
	seen     map[string]int
	injected int
	requests []Request
	after    func(op string, status int)
	rewrite  func(op string, body []byte) []byte
	answers  map[string]func(form url.Values) string
	lag      *lag
}

// Request is one request that passed the proxy, with its form parameters
// and the access key id it was signed with.
type Request struct {
	Op    string
	Form  url.Values
	KeyID string
}

// SigningKey is the access key id of a SigV4 Authorization header.
func SigningKey(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(cred, "/")
	return id
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
		after, rewrite := fp.after, fp.rewrite
		if fp.lag != nil && resp.StatusCode == 200 {
			fp.lag.created(resp.Request.Header.Get("X-Rdsgate-Op"), resp.Request.Header.Get("X-Rdsgate-Entity"))
		}
		fp.mu.Unlock()
		if rewrite != nil && resp.StatusCode == 200 {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			body = rewrite(resp.Request.Header.Get("X-Rdsgate-Op"), body)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
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
		fp.requests = append(fp.requests, Request{Op: op, Form: form, KeyID: SigningKey(r.Header.Get("Authorization"))})
		var f *Fault
		if fp.lag != nil {
			f = fp.lag.decide(op, form)
		}
		if f == nil && fp.decide != nil {
			f = fp.decide(op, fp.seen[op])
		}
		if f == nil && fp.decideOn != nil {
			f = fp.decideOn(op, form)
		}
		if f != nil {
			fp.injected++
		}
		answer := fp.answers[op]
		fp.mu.Unlock()
		if f == nil && answer != nil {
			w.Header().Set("Content-Type", "text/xml")
			fmt.Fprint(w, answer(form))
			return
		}
		if f != nil {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(f.Status)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>rdsgate-fault</RequestId></ErrorResponse>`, f.Code, f.Message)
			return
		}
		r.Header.Set("X-Rdsgate-Op", op)
		r.Header.Set("X-Rdsgate-Entity", entityOf(op, form))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fp.URL = srv.URL
	return fp
}

// Answer answers an operation the emulator lacks (moto 5.2.1 has no
// DescribeDBClusterEndpoints or DescribeDBProxyEndpoints) with the XML
// body f gives for the request's parameters.
func (fp *FaultProxy) Answer(op string, f func(form url.Values) string) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.answers == nil {
		fp.answers = map[string]func(url.Values) string{}
	}
	fp.answers[op] = f
}

// Rewrite sets a hook that changes the emulator's successful answers.
func (fp *FaultProxy) Rewrite(f func(op string, body []byte) []byte) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.rewrite = f
}

var (
	reDBInstance = regexp.MustCompile(`(?s)<DBInstance>.*?</DBInstance>`)
	reInstanceID = regexp.MustCompile(`<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>`)
	reResourceID = regexp.MustCompile(`<DbiResourceId>[^<]*</DbiResourceId>`)
)

// DistinctResourceIDs rewrites RDS answers so that every instance has a
// resource id of its own, as in AWS: moto 5.2.1 gives every instance
// db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U, and rds-db:connect ARNs name resource ids.
func DistinctResourceIDs(_ string, body []byte) []byte {
	return reDBInstance.ReplaceAllFunc(body, func(block []byte) []byte {
		m := reInstanceID.FindSubmatch(block)
		if m == nil {
			return block
		}
		sum := sha256.Sum256(m[1])
		id := "db-" + base32.StdEncoding.EncodeToString(sum[:])[:26]
		return reResourceID.ReplaceAll(block, []byte("<DbiResourceId>"+id+"</DbiResourceId>"))
	})
}

// DecideOn sets a fault rule that sees the request's parameters (a fault
// for one role's AssumeRole, say).
func (fp *FaultProxy) DecideOn(f func(op string, form url.Values) *Fault) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.decideOn = f
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

// All returns every request seen so far.
func (fp *FaultProxy) All() []Request {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]Request(nil), fp.requests...)
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

// Lag makes the proxy behave like real IAM, which is eventually consistent:
// for delay after a role, user or managed policy is created, requests that
// name it answer NoSuchEntity, and a trust policy that names it as a
// principal is refused with MalformedPolicyDocument "Invalid principal in
// policy". moto has neither; terraform-provider-aws retries both for about
// two minutes. It returns how many requests it refused so far.
func (fp *FaultProxy) Lag(delay time.Duration) func() int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.lag = &lag{delay: delay, born: map[string]time.Time{}}
	return func() int {
		fp.mu.Lock()
		defer fp.mu.Unlock()
		return fp.lag.refused
	}
}

type lag struct {
	delay   time.Duration
	born    map[string]time.Time // "role/NAME", "user/NAME", "policy/NAME"
	refused int
}

// entityOf names the entity a request creates or refers to.
func entityOf(op string, form url.Values) string {
	switch {
	case form.Get("PolicyArn") != "":
		a := form.Get("PolicyArn")
		return "policy/" + a[strings.LastIndexByte(a, '/')+1:]
	case op == "CreatePolicy":
		return "policy/" + form.Get("PolicyName")
	case form.Get("RoleName") != "":
		return "role/" + form.Get("RoleName")
	case form.Get("UserName") != "":
		return "user/" + form.Get("UserName")
	}
	return ""
}

func (l *lag) created(op, entity string) {
	switch op {
	case "CreateRole", "CreateUser", "CreatePolicy":
		l.born[entity] = time.Now()
	}
}

var principalARN = regexp.MustCompile(`arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/(?:[^"/]+/)*([^"/]+)`)

func (l *lag) young(entity string) bool {
	t, ok := l.born[entity]
	return ok && time.Since(t) < l.delay
}

func (l *lag) decide(op string, form url.Values) *Fault {
	if op == "CreateRole" || op == "UpdateAssumeRolePolicy" {
		doc := form.Get("AssumeRolePolicyDocument") + form.Get("PolicyDocument")
		for _, m := range principalARN.FindAllStringSubmatch(doc, -1) {
			if l.young(m[1] + "/" + m[2]) {
				l.refused++
				return &Fault{Status: 400, Code: "MalformedPolicyDocument", Message: fmt.Sprintf("Invalid principal in policy: \"AWS\":\"%s\"", m[0])}
			}
		}
	}
	if strings.HasPrefix(op, "Create") && op != "CreatePolicyVersion" {
		return nil
	}
	if e := entityOf(op, form); e != "" && l.young(e) {
		l.refused++
		return &Fault{Status: 404, Code: "NoSuchEntity", Message: "The " + strings.Replace(e, "/", " with name ", 1) + " cannot be found."}
	}
	return nil
}
