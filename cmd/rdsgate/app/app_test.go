package app

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/policies"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The tests here do not run in parallel: urfave/cli/v2 keeps its help and
// version flags in package variables and writes to them while parsing, so two
// apps running at once race. The binary only ever runs one.

const sampleInventory = "../../../examples/inventory/sample.json"

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), append([]string{"rdsgate"}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/rdsgate/app -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update if the change is intended)\n--- got\n%s", path, got)
	}
}

func TestPrintIAMGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"auto-role.txt", []string{"--role", "rdsgate-proxy", "--account-id", "123456789012", "--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/*"}},
		{"auto-role.json", []string{"--role", "rdsgate-proxy", "--account-id", "123456789012", "--format", "json"}},
		{"manual-user.txt", []string{"--user", "db-gateway", "--manual", "--types", "rds,rds-proxy"}},
		{"all-types-govcloud.json", []string{"--role", "arn:aws-us-gov:iam::123456789012:role/ops/proxy", "--types", "rds,rds-proxy", "--types", "redshift,redshift-serverless", "--format", "json"}},
		{"document-policy.json", []string{"--role", "rdsgate-proxy", "--manual", "--document", "policy"}},
		{"document-boundary.json", []string{"--role", "rdsgate-proxy", "--account-id", "123456789012", "--document", "boundary"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", append([]string{"bootstrap", "print-iam"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if strings.HasSuffix(tt.name, ".json") && !json.Valid([]byte(r.stdout)) {
				t.Fatalf("not JSON: %s", r.stdout)
			}
			golden(t, "print-iam-"+tt.name, r.stdout)
		})
	}
}

// TestPrintIAMDocumentsParse checks that what print-iam prints is a policy
// IAM would accept: it parses, and it fits its quota.
func TestPrintIAMDocumentsParse(t *testing.T) {
	for _, doc := range []string{"policy", "boundary"} {
		r := run(t, "", "bootstrap", "print-iam", "--role", "p", "--types", strings.Join(policies.BootstrapTypes, ","), "--document", doc)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		d, err := policies.Parse([]byte(r.stdout))
		if err != nil {
			t.Fatalf("%s does not parse: %v", doc, err)
		}
		if d.Size() > policies.DefaultQuotas().PolicySize {
			t.Fatalf("%s is %d characters", doc, d.Size())
		}
	}
}

func TestShardsPlan(t *testing.T) {
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	r := run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--format", "table", "--output", planFile)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	golden(t, "shards-plan-sample.txt", r.stdout)

	data, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	// The JSON contract the README documents.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"format_version", "partition", "account_id", "base", "settings", "principals", "steps", "stats"} {
		if _, ok := top[key]; !ok {
			t.Errorf("plan JSON has no %q", key)
		}
	}
	var shape struct {
		Principals []struct {
			Kind           string `json:"kind"`
			Name           string `json:"name"`
			InlinePolicies []struct {
				Name     string          `json:"name"`
				Document json.RawMessage `json:"document"`
			} `json:"inline_policies"`
			ManagedPolicies []struct {
				Name     string          `json:"name"`
				Document json.RawMessage `json:"document"`
			} `json:"managed_policies"`
			Databases []string `json:"databases"`
		} `json:"principals"`
		Stats struct {
			Databases, Documents, LowerBound, Moved int
		} `json:"stats"`
	}
	if err := json.Unmarshal(data, &shape); err != nil {
		t.Fatal(err)
	}
	if len(shape.Principals) < 2 || shape.Principals[0].Kind != "role" || shape.Principals[0].Name != "rdsgate-proxy" {
		t.Fatalf("unexpected principals %+v", shape.Principals)
	}
	if _, err := policies.Parse(shape.Principals[0].InlinePolicies[0].Document); err != nil {
		t.Fatalf("document does not parse: %v", err)
	}

	// Stdout in JSON is the same plan as --output.
	r = run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy")
	if r.code != 0 || r.stdout != string(data) {
		t.Fatalf("JSON on stdout differs from --output (exit %d)", r.code)
	}

	// Planning again on top of the plan changes nothing.
	r = run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--previous", planFile, "--format", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "No changes") || !strings.Contains(r.stdout, "0 moved; 0 documents to write") {
		t.Fatalf("replanning: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Dropping databases from the inventory rewrites only their documents.
	var inv policies.Inventory
	raw, _ := os.ReadFile(sampleInventory)
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	inv.Databases = slices.Delete(inv.Databases, 10, 12)
	smaller, _ := json.Marshal(inv)
	r = run(t, string(smaller), "shards", "plan", "--inventory", "-", "--base-role", "rdsgate-proxy", "--previous", planFile)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	next, err := policies.ReadPlan([]byte(r.stdout), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if next.Stats.Removed != 2 || next.Stats.Moved != 0 || next.Stats.Written > 2 {
		t.Fatalf("removing two databases: %+v", next.Stats)
	}
}

func TestUsageErrors(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inv.json")
	badDB := `{"databases":[{"name":"orders","engine":"postgres","kind":"instance","resource_id":"orders-prod","region":"us-east-1","account_id":"123456789012","db_users":["app"]}]}`
	if err := os.WriteFile(inv, []byte(badDB), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(t.TempDir(), "secret.json")
	if err := os.WriteFile(unreadable, []byte("{}"), 0o000); err != nil {
		t.Fatal(err)
	}
	gateway := filepath.Join(t.TempDir(), "gateway.json")
	rbacFile := filepath.Join(t.TempDir(), "rbac.json")
	if err := os.WriteFile(gateway, []byte(`{"ca_bundle": "ca.pem", "region": "us-east-1", "databases": [{"name": "orders", "protocol": "postgres", "endpoint": "h:5432"}],
	  "gateway": {"listen_postgres": "127.0.0.1:0", "tls_cert": "c", "tls_key": "k", "client_ca": "ca", "rbac_file": "`+rbacFile+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rbacFile, []byte("{\"rules\": [\n  {\"name\": \"dev\", \"identities\": [\"*\"], \"databases\": [\"orders\"], \"db_users\": [\"app\"], \"db_names\": [\"*\"]}\n]}"), 0o644); err != nil {
		t.Fatal(err)
	}
	badRBAC := filepath.Join(t.TempDir(), "bad-rbac.json")
	if err := os.WriteFile(badRBAC, []byte("{\"rules\": [\n  {\"name\": \"dev\",\n   \"identity\": [\"*\"]}\n]}"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := []string{"access", "check", "--config", gateway, "--db", "orders", "--db-user", "app", "--db-name", "x"}
	newer := filepath.Join(t.TempDir(), "newer.json")
	if err := os.WriteFile(newer, []byte(`{"format_version":9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"shard"}, 2, `unknown command "shard"`},
		{"unknown subcommand", []string{"shards", "apply-all"}, 2, `unknown command "apply-all" for 'rdsgate shards'`},
		{"unknown flag", []string{"bootstrap", "print-iam", "--rol", "x"}, 2, "unknown flag --rol; did you mean --role? (see 'rdsgate bootstrap print-iam --help')"},
		{"flag of another command", []string{"discover", "--tagz", "env=prod"}, 2, "unknown flag --tagz; did you mean --tag? (see 'rdsgate discover --help')"},
		{"region typo in configure", []string{"proxy", "configure", "--name", "a", "--protocol", "postgres", "--uri", "h:5432", "--region", "us-eats-1", "--output", "-"}, 2,
			`rdsgate: --region: unknown region "us-eats-1" (did you mean "us-east-1"?): regions look like us-east-1`},
		{"region typo before any call", []string{"doctor", "--region", "us-eats-1"}, 2, `rdsgate: --region: unknown region "us-eats-1" (did you mean "us-east-1"?)`},
		{"output is a file, not a format", []string{"discover", "--output", "table"}, 2, "rdsgate: --output names the file to write the inventory to; for a table on standard output use --format table"},
		{"discover an unknown type", []string{"discover", "--types", "redshift,dynamodb", "--region", "us-east-1"}, 2, `unknown type "dynamodb"; use rds, aurora, rds-proxy, redshift or redshift-serverless`},
		{"role and user", []string{"bootstrap", "print-iam", "--role", "a", "--user", "b"}, 2, "cannot specify --role and --user at the same time"},
		{"auto needs a name", []string{"bootstrap", "print-iam"}, 2, "give --role NAME or --user NAME, or use --manual"},
		{"unknown type", []string{"bootstrap", "print-iam", "--manual", "--types", "rds,dynamodb"}, 2, `unknown type "dynamodb"`},
		{"bad account", []string{"bootstrap", "print-iam", "--manual", "--account-id", "12"}, 2, `account id "12" must be 12 digits`},
		{"unknown partition", []string{"bootstrap", "print-iam", "--manual", "--partition", "aws-iso"}, 2, `unknown partition "aws-iso"`},
		{"bad format", []string{"bootstrap", "print-iam", "--manual", "--format", "yaml"}, 2, "--format must be one of text, json"},
		{"role arn of a user", []string{"bootstrap", "print-iam", "--role", "arn:aws:iam::123456789012:user/x"}, 2, "is not an IAM role ARN"},
		{"no inventory", []string{"shards", "plan", "--base-role", "p"}, 2, "--inventory is required"},
		{"no principal", []string{"shards", "plan", "--inventory", inv}, 2, "--base-role NAME or --user NAME"},
		{"missing file", []string{"shards", "plan", "--inventory", "/nonexistent/inv.json", "--base-role", "p"}, 2, "inventory /nonexistent/inv.json: no such file"},
		{"invalid entry", []string{"shards", "plan", "--inventory", inv, "--base-role", "p"}, 2, `databases[0] ("orders"): resource_id: "orders-prod"`},
		{"newer plan", []string{"shards", "plan", "--inventory", sampleInventory, "--base-role", "p", "--previous", newer}, 2, "upgrade rdsgate"},
		{"too many managed", []string{"shards", "plan", "--inventory", sampleInventory, "--base-role", "p", "--max-managed", "40"}, 2, "between 0 and 25"},
		{"identity is not an ARN", append(check, "--identity", "notanarn"), 2,
			`rdsgate: --identity "notanarn": neither an ARN nor a certificate subject ("notanarn" has no =: a subject is TYPE=value pairs separated by commas): give arn:aws:iam::123456789012:role/NAME, `},
		{"identity ARN malformed", append(check, "--identity", "arn:aws:iam::12345:rol/dev"), 2,
			`rdsgate: --identity "arn:aws:iam::12345:rol/dev": not an IAM identity ARN: give arn:aws:iam::123456789012:role/NAME, `},
		{"rbac file error says where", append(check, "--identity", "CN=alice", "--rbac", badRBAC), 2,
			"rbac_file " + badRBAC + `: line 3, column 4: unknown field "identity"`},
		{"no fit", []string{"shards", "plan", "--inventory", sampleInventory, "--user", "alice", "--max-shard-roles", "0"}, 1, "cannot fit 508 databases"},
	}
	if os.Getuid() != 0 {
		tests = append(tests, struct {
			name string
			args []string
			code int
			want string
		}{"unreadable file", []string{"shards", "plan", "--inventory", unreadable, "--base-role", "p"}, 2, "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 25 || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("error output is not one clear message:\n%s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("a failed command wrote to stdout: %q", r.stdout)
			}
		})
	}
}

// shellWords splits a command line the way sh does for the quoting
// print-iam uses: single quotes and '\” escapes. A glob outside quotes is
// an error, because a shell would expand it.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '*' || c == '?' || c == '>' || c == '|':
			t.Fatalf("unquoted %q in a printed command: %s", c, line)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestPrintedCommandsRun(t *testing.T) {
	r := run(t, "", "bootstrap", "print-iam", "--role", "rdsgate-proxy", "--account-id", "123456789012",
		"--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/*", "--types", "rds,redshift")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	ran := 0
	for _, line := range strings.Split(r.stdout, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "rdsgate bootstrap print-iam ") {
			continue
		}
		cmd, _, _ := strings.Cut(line, " > ")
		words := shellWords(t, cmd)
		out := run(t, "", words[1:]...)
		if out.code != 0 {
			t.Fatalf("%s: exit %d: %s", cmd, out.code, out.stderr)
		}
		if _, err := policies.Parse([]byte(out.stdout)); err != nil {
			t.Fatalf("%s: output is not a policy: %v", cmd, err)
		}
		ran++
	}
	if ran != 2 {
		t.Fatalf("ran %d printed commands, want 2", ran)
	}
}

// TestCLIReference keeps docs/cli.md in step with the commands; `make docs`
// rewrites it.
func TestCLIReference(t *testing.T) {
	md, err := NewApp().ToMarkdown()
	if err != nil {
		t.Fatal(err)
	}
	md = "<!-- Generated by `make docs` from the rdsgate command line; do not edit. -->\n\n" + md
	path := "../../../docs/cli.md"
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != md {
		t.Fatalf("docs/cli.md is out of date: run make docs")
	}
}

func TestReservedInline(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "bootstrap.json")
	r := run(t, "", "bootstrap", "print-iam", "--role", "p", "--document", "policy")
	if err := os.WriteFile(doc, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	parsed, err := policies.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	plan := func(reserved string) (*policies.Plan, result) {
		r := run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "p", "--reserved-inline", reserved)
		if r.code != 0 {
			return nil, r
		}
		p, err := policies.ReadPlan([]byte(r.stdout), "stdout")
		if err != nil {
			t.Fatal(err)
		}
		return p, r
	}
	fromFile, r := plan("@" + doc)
	if fromFile == nil {
		t.Fatal(r.stderr)
	}
	sum, _ := plan(fmt.Sprintf("%d,100", parsed.Size()))
	if fromFile.Settings.ReservedInline != parsed.Size() || sum.Settings.ReservedInline != parsed.Size()+100 {
		t.Fatalf("reserved %d and %d, want %d and %d", fromFile.Settings.ReservedInline, sum.Settings.ReservedInline, parsed.Size(), parsed.Size()+100)
	}
	if got := fromFile.Principals[0].InlinePolicies[0].Size; got > 10240-parsed.Size() {
		t.Fatalf("inline connect policy is %d characters, leaving no room for the %d reserved", got, parsed.Size())
	}
	for reserved, want := range map[string]string{"lots": "must be a number", "-5": "must be a number", "@" + filepath.Join(dir, "none.json"): "no such file", "@" + sampleInventory: "malformed policy document"} {
		if _, r := plan(reserved); r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("--reserved-inline %s: exit %d %q, want %q", reserved, r.code, r.stderr, want)
		}
	}
}
