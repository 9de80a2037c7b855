package policies

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func validDB() map[string]any {
	return map[string]any{
		"name": "orders", "engine": "postgres", "kind": "instance",
		"resource_id": "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "region": "us-east-1", "account_id": "123456789012",
		"endpoint": "orders.abc.us-east-1.rds.amazonaws.com", "port": 5432, "db_users": []string{"app"},
	}
}

func inventoryJSON(t *testing.T, dbs ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"databases": dbs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseInventoryValid(t *testing.T) {
	t.Parallel()
	second := validDB()
	second["name"], second["engine"], second["kind"], second["resource_id"] = "maria", "mariadb", "instance", "db-ZYXWVUTSRQPONMLKJIHGFEDCBA"
	second["engine_version"] = "10.6.14"
	third := validDB()
	third["name"], third["engine"], third["kind"], third["resource_id"], third["db_users"] = "aurora", "aurora-postgresql", "cluster", "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ", []string{"*"}
	third["engine_mode"] = "provisioned"
	inv, err := ParseInventory(inventoryJSON(t, validDB(), second, third), "inv.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Databases) != 3 || inv.Databases[2].Engine.Protocol() != "postgres" || inv.Databases[1].Engine.Protocol() != "mysql" {
		t.Fatalf("unexpected inventory %+v", inv)
	}
}

func TestParseInventoryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(db map[string]any)
		want   []string // all must appear in the message
	}{
		{"unknown engine", func(db map[string]any) { db["engine"] = "postgress" }, []string{`databases[0] ("orders"): engine: unknown engine "postgress"`, `did you mean "postgres"`}},
		{"aurora serverless v1", func(db map[string]any) {
			db["engine"], db["kind"], db["resource_id"], db["engine_mode"] = "aurora-mysql", "cluster", "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ", "serverless"
		}, []string{"engine_mode: Aurora Serverless v1 does not support IAM database authentication"}},
		{"old mariadb", func(db map[string]any) { db["engine"], db["engine_version"] = "mariadb", "10.5.21" }, []string{"engine_version: MariaDB 10.5.21 does not support IAM", "10.6"}},
		{"mariadb without version", func(db map[string]any) { db["engine"] = "mariadb" }, []string{"engine_version: is required for mariadb"}},
		{"identifier instead of resource id", func(db map[string]any) { db["resource_id"] = "orders-prod" }, []string{"resource_id:", `"orders-prod"`, "describe-db-instances"}},
		{"cluster id on instance", func(db map[string]any) { db["resource_id"] = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ" }, []string{"resource_id:", "not of an instance"}},
		{"aurora instance", func(db map[string]any) { db["engine"] = "aurora-postgresql" }, []string{`kind: Aurora authorizes IAM users on the cluster`}},
		{"unknown region", func(db map[string]any) { db["region"] = "us-east-7" }, []string{`region: unknown region "us-east-7"`}},
		{"missing region", func(db map[string]any) { delete(db, "region") }, []string{"region: is required"}},
		{"bad account", func(db map[string]any) { db["account_id"] = "1234" }, []string{`account_id: account id "1234" must be 12 digits`}},
		{"unknown kind", func(db map[string]any) { db["kind"] = "serverless" }, []string{`kind: unknown kind "serverless"`}},
		{"empty users", func(db map[string]any) { db["db_users"] = []string{} }, []string{"db_users: is empty"}},
		{"star and users", func(db map[string]any) { db["db_users"] = []string{"*", "app"} }, []string{`"*" already allows every user`}},
		{"bad user", func(db map[string]any) { db["db_users"] = []string{"app user"} }, []string{`"app user" is not a database user name`}},
		{"bad port", func(db map[string]any) { db["port"] = 70000 }, []string{"port: 70000 is not a TCP port"}},
		{"port as string", func(db map[string]any) { db["port"] = "5432" }, []string{"databases[0]: port: expected a number, got string"}},
		{"unknown field", func(db map[string]any) { db["engin"] = "postgres" }, []string{`databases[0]: unknown field "engin"`}},
		{"bad endpoint", func(db map[string]any) { db["endpoint"] = "postgres://x:5432" }, []string{"endpoint:", "not a host name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := validDB()
			tt.change(db)
			_, err := ParseInventory(inventoryJSON(t, db), "inv.json")
			if err == nil {
				t.Fatal("invalid inventory accepted")
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%v is not ErrInvalidInput", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "inv.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestParseInventoryDocumentErrors(t *testing.T) {
	t.Parallel()
	dup := inventoryJSON(t, validDB(), validDB())
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"duplicate name", dup, `databases[1] ("orders"): name: "orders" is used by databases[0] too`},
		{"syntax error", []byte("{\n \"databases\": [\n  {\"name\": }\n]}"), "invalid JSON at line 3, column 12"},
		{"not an object", []byte(`[1,2]`), "expected a JSON object"},
		{"missing list", []byte(`{"dbs": []}`), `unknown top-level field "dbs"`},
		{"list of strings", []byte(`{"databases": "x"}`), "databases: must be a list of objects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseInventory(tt.in, "inv.json")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestInventoryReportsEveryProblem(t *testing.T) {
	t.Parallel()
	a, b := validDB(), validDB()
	a["engine"] = "oracle"
	b["name"], b["region"] = "second", "nowhere-1"
	_, err := ParseInventory(inventoryJSON(t, a, b), "inv.json")
	if err == nil || !strings.Contains(err.Error(), "2 problems") || !strings.Contains(err.Error(), "oracle") || !strings.Contains(err.Error(), "nowhere-1") {
		t.Fatalf("error %v does not list both problems", err)
	}
}

func TestDisambiguateNames(t *testing.T) {
	a := &Inventory{Databases: []Database{{Name: "orders", AccountID: "111111111111"}, {Name: "billing", AccountID: "111111111111"}}}
	b := &Inventory{Databases: []Database{{Name: "orders", AccountID: "222222222222"}, {Name: "search", AccountID: "222222222222"}}}
	DisambiguateNames([]*Inventory{a, b}, func(d Database) string { return d.AccountID })
	var got []string
	for _, inv := range []*Inventory{a, b} {
		for _, d := range inv.Databases {
			got = append(got, d.Name)
		}
	}
	want := []string{"orders-111111111111", "billing", "orders-222222222222", "search"}
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
}
