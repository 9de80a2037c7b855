// Package drivers runs database drivers' own test suites twice, once straight
// against the server and once through `rdsgate proxy start`, and fails with
// the list of every test whose result differs. A driver's suite exercises the
// wire far beyond what rdsgate's own tests think of (COPY, pipelines,
// LISTEN/NOTIFY, cancel, huge messages, every type); a proxy that is faithful
// to the wire changes none of its results.
//
// The suites come from the Go module proxy at pinned versions, so the run
// needs it (CI has it). `make drivers` runs this; it is skipped otherwise.
package drivers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The suites, pinned: a new version is a deliberate change.
const (
	pgxModule   = "github.com/jackc/pgx/v5@v5.12.0"
	mysqlModule = "github.com/go-sql-driver/mysql@v1.10.1"
)

func enabled(t *testing.T) {
	if os.Getenv("RDSGATE_DRIVER_SUITES") == "" {
		t.Skip("driver suites run with `make drivers` (RDSGATE_DRIVER_SUITES=1); they fetch the drivers from the Go module proxy")
	}
}

// result is one test's outcome: pass, fail or skip.
type result struct {
	Action string
	Output []string // the test's own lines, kept for the report
}

// suiteRun is what `go test -json` said of every test in one run.
type suiteRun map[string]*result

// fetchSuite downloads a module and copies it somewhere writable (the module
// cache is read-only and some suites write files next to their tests).
func fetchSuite(t *testing.T, module string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = t.TempDir()
	// go mod download of an explicit version needs no go.mod.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s (the driver suites need the Go module proxy)", module, err, out)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %s %v", module, info.Error, err)
	}
	dir := filepath.Join(t.TempDir(), "suite")
	if out, err := exec.Command("cp", "-R", info.Dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", info.Dir, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dir).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	// Download the suite's own test dependencies once, before the two timed runs.
	dl := exec.Command("go", "mod", "download")
	dl.Dir = dir
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("go mod download in %s: %v\n%s", module, err, out)
	}
	return dir
}

// tempName matches the random part of temporary paths that some suites put
// in subtest names, so that the same subtest has the same name in both runs.
var tempName = regexp.MustCompile(`([A-Za-z_])[0-9]{6,}`)

// runSuite runs `go test -json` in dir with env and collects each test's
// result; run limits it to some tests (a regexp for -run), pkgs to some packages.
func runSuite(t *testing.T, dir string, env []string, run, skip string, pkgs ...string) suiteRun {
	t.Helper()
	args := []string{"test", "-json", "-count=1", "-p", "1", "-timeout", "20m"}
	if run != "" {
		args = append(args, "-run", run)
	}
	if skip != "" {
		args = append(args, "-skip", skip)
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	results := suiteRun{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct{ Action, Package, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		key := strings.TrimPrefix(ev.Package, "github.com/") + " " + tempName.ReplaceAllString(ev.Test, "${1}N")
		r := results[key]
		if r == nil {
			r = &result{}
			results[key] = r
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			r.Action = ev.Action
		case "output":
			if len(r.Output) < 40 {
				r.Output = append(r.Output, strings.TrimRight(ev.Output, "\n"))
			}
		}
	}
	// A failing suite exits non-zero; that is a result, not an error here.
	_ = cmd.Wait()
	if os.Getenv("RDSGATE_DRIVER_SUITES_DEBUG") != "" {
		t.Logf("go test stderr:\n%s", stderr.String())
		for k, r := range results {
			if r.Action != "pass" && r.Action != "skip" {
				t.Logf("%s %s:\n%s", k, actionOf(r), strings.Join(r.Output, "\n"))
			}
		}
	}
	if len(results) == 0 {
		t.Fatalf("go test in %s ran no tests:\n%s", dir, stderr.String())
	}
	return results
}

// diff lists the tests whose result differs between two runs.
func diff(direct, proxied suiteRun) []string {
	var keys []string
	for k := range direct {
		keys = append(keys, k)
	}
	for k := range proxied {
		if _, ok := direct[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		a, b := direct[k], proxied[k]
		if a == nil || b == nil || a.Action != b.Action {
			out = append(out, k)
		}
	}
	return out
}

func actionOf(r *result) string {
	if r == nil || r.Action == "" {
		return "not run"
	}
	return r.Action
}

func counts(r suiteRun) string {
	n := map[string]int{}
	for _, v := range r {
		n[actionOf(v)]++
	}
	return fmt.Sprintf("%d passed, %d failed, %d skipped, %d unfinished", n["pass"], n["fail"], n["skip"], n["not run"])
}

// compare runs a suite directly and through the proxy and fails with every
// test whose result differs. A test that differs is run again, alone, in
// both modes (up to twice): a suite's own timing-sensitive tests can flake
// on a busy machine, and only a difference that holds is the proxy's.
// skip names tests (a -skip regexp) that cannot run on this machine at all,
// each with its reason in the caller.
func compare(t *testing.T, name, dir string, direct, proxied []string, skip string, pkgs ...string) {
	t.Helper()
	start := time.Now()
	d := runSuite(t, dir, direct, "", skip, pkgs...)
	directTime := time.Since(start)
	start = time.Now()
	p := runSuite(t, dir, proxied, "", skip, pkgs...)
	t.Logf("%s directly: %s (%s)", name, counts(d), directTime.Round(time.Second))
	t.Logf("%s through rdsgate: %s (%s)", name, counts(p), time.Since(start).Round(time.Second))
	differ := diff(d, p)
	for attempt := 0; attempt < 2 && len(differ) > 0; attempt++ {
		var still []string
		for _, k := range differ {
			pkg, test, _ := strings.Cut(k, " ")
			top, _, _ := strings.Cut(test, "/")
			run := "^" + regexp.QuoteMeta(top) + "$"
			pkgPath := "github.com/" + pkg
			d2 := runSuite(t, dir, direct, run, skip, pkgPath)
			p2 := runSuite(t, dir, proxied, run, skip, pkgPath)
			if actionOf(d2[k]) != actionOf(p2[k]) {
				still = append(still, k)
				d[k], p[k] = d2[k], p2[k]
			} else {
				t.Logf("%s: %s differed once (%s directly, %s through rdsgate), then agreed (%s): the suite's own flake", name, k,
					actionOf(d[k]), actionOf(p[k]), actionOf(d2[k]))
			}
		}
		differ = still
	}
	if len(differ) == 0 {
		t.Logf("%s: no test's result differs between a direct connection and rdsgate (%d tests)", name, len(d))
		return
	}
	var report strings.Builder
	for _, k := range differ {
		fmt.Fprintf(&report, "\n--- %s: %s directly, %s through rdsgate\n", k, actionOf(d[k]), actionOf(p[k]))
		for _, side := range []struct {
			label string
			r     *result
		}{{"direct", d[k]}, {"rdsgate", p[k]}} {
			if side.r != nil && side.r.Action != "pass" {
				for _, line := range side.r.Output {
					fmt.Fprintf(&report, "    [%s] %s\n", side.label, line)
				}
			}
		}
	}
	t.Errorf("%s: %d tests differ between a direct connection and rdsgate:%s", name, len(differ), report.String())
}

func itoa(n int) string { return strconv.Itoa(n) }
