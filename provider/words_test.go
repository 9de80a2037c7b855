package provider

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/bootstrap"
)

// rdsgateFlags reads the names of the CLI's flags from its source, so that a
// flag added there is checked here without anyone remembering to.
func rdsgateFlags(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../cmd/rdsgate/app/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CLI sources: %v", err)
	}
	name := regexp.MustCompile(`Flag\{Name: "([a-z][a-z-]*)"`)
	flags := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllSubmatch(data, -1) {
			flags[string(m[1])] = true
		}
	}
	if len(flags) < 20 {
		t.Fatalf("found only %d CLI flags; has the flag syntax changed?", len(flags))
	}
	return flags
}

// TestProviderErrorsNameAttributes parses every string the planner and the
// AWS layer can put in an error and checks that, once the provider has
// worded it, no rdsgate CLI flag is left. Flags in example commands (`aws
// rds ...`, `rdsgate enable-iam-auth ...`) are commands a user can run and
// stay.
func TestProviderErrorsNameAttributes(t *testing.T) {
	t.Parallel()
	flags := rdsgateFlags(t)
	flagRe := regexp.MustCompile(`--([a-z][a-z-]*)`)
	command := regexp.MustCompile(`\b(aws|rdsgate) [a-z0-9-]+( [a-z0-9-]+)? [^"]*$`)
	checked := 0
	files, err := filepath.Glob("../policies/*.go")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../bootstrap/*.go")
	for _, fname := range append(files, more...) {
		// The doctor is a CLI command; the provider never runs it.
		if strings.HasSuffix(fname, "_test.go") || strings.HasSuffix(fname, "doctor.go") {
			continue
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, fname, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, m := range flagRe.FindAllStringSubmatchIndex(s, -1) {
				flag := s[m[2]:m[3]]
				if !flags[flag] || command.MatchString(s[:m[0]]) {
					continue
				}
				if strings.TrimSpace(s) == "--"+flag {
					continue // a flag name alone, used to build a message below
				}
				checked++
				if out := tfText(errors.New(s)); strings.Contains(out, "--"+flag) {
					t.Errorf("%s: the provider would show the CLI flag --%s:\n  %s\nadd its Terraform wording to tfWords (provider/words.go)", fset.Position(lit.Pos()), flag, out)
				}
			}
			return true
		})

	}
	if checked < 10 {
		t.Fatalf("checked only %d messages; is the scan still finding them?", checked)
	}
}

func TestProviderWordsQuotaAndReservation(t *testing.T) {
	t.Parallel()
	q := errors.New("the plan assumes PolicySizeQuota 6144 but account 123456789012 allows 5120; plan again with --policy-size 5120")
	if out := tfText(q); strings.Contains(out, "plan again with --") || !strings.Contains(out, "rdsgate shards plan --policy-size 5120") {
		t.Errorf("quota: %s", out)
	}
	re := &bootstrap.ReservationError{Kind: "role", Name: "proxy", Inline: true, Used: 1441, Reserved: 1440, Quota: 10240}
	if out := tfText(re); !strings.Contains(out, "reserved_inline = 1441") || strings.Contains(out, "--") {
		t.Errorf("explicit reservation: %s", out)
	}
	auto := reservationText(&bootstrap.ReservationError{Kind: "role", Name: "proxy", Used: 3, Reserved: 1, Quota: 10}, true)
	for _, want := range []string{"3 managed policies", "reserved 1 (of 10)", "pending_managed_policy_arns", "apply again"} {
		if !strings.Contains(auto, want) {
			t.Errorf("automatic reservation text lacks %q: %s", want, auto)
		}
	}
}
