//go:build ignore

// generate writes sample.json, the bundled inventory of a made-up company's
// fleet: a few hundred RDS instances, Aurora clusters (writer and reader
// endpoints) and RDS Proxies over three regions, with least-privilege
// database users in production and any user in development.
//
//	go run generate.go > sample.json
package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
)

type database struct {
	Name          string            `json:"name"`
	Engine        string            `json:"engine"`
	EngineVersion string            `json:"engine_version"`
	Kind          string            `json:"kind"`
	Identifier    string            `json:"identifier"`
	ResourceID    string            `json:"resource_id"`
	Region        string            `json:"region"`
	AccountID     string            `json:"account_id"`
	Endpoint      string            `json:"endpoint"`
	Port          int               `json:"port"`
	DBUsers       []string          `json:"db_users"`
	Labels        map[string]string `json:"labels"`
}

func main() {
	r := rand.New(rand.NewPCG(2026, 11))
	id := func(n int, alphabet string) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	teams := []string{"orders", "payments", "catalog", "search", "accounts", "billing", "stock", "shipping",
		"analytics", "auth", "reviews", "pricing", "ledger", "notify", "media", "support", "fraud", "loyalty",
		"returns", "tax", "quotes", "events", "maps", "chat"}
	envs := []struct {
		name  string
		users []string
		count int
	}{
		{"prod", []string{"app", "migrator", "readonly"}, 7},
		{"staging", []string{"app", "readonly"}, 4},
		{"dev", []string{"*"}, 3},
	}
	regions := []string{"us-east-1", "us-east-1", "us-east-1", "eu-west-1", "eu-west-1", "ap-southeast-2"}
	var dbs []database
	for _, team := range teams {
		for _, env := range envs {
			for n := 1; n <= env.count; n++ {
				region := regions[r.IntN(len(regions))]
				labels := map[string]string{"env": env.name, "team": team}
				ident := fmt.Sprintf("%s-%s-%d", team, env.name, n)
				host := "c9akciq32" + region
				switch r.IntN(6) {
				case 0, 1: // Aurora PostgreSQL: a writer and a reader endpoint on one cluster
					rid := "cluster-" + id(26, upper)
					for _, ep := range []struct{ suffix, dns string }{{"", "cluster-"}, {"-reader", "cluster-ro-"}} {
						dbs = append(dbs, database{Name: ident + ep.suffix, Engine: "aurora-postgresql", EngineVersion: "16.4", Kind: "cluster",
							Identifier: ident, ResourceID: rid, Region: region, AccountID: "123456789012",
							Endpoint: fmt.Sprintf("%s.%s%s.rds.amazonaws.com", ident, ep.dns, host), Port: 5432, DBUsers: env.users, Labels: labels})
					}
				case 2: // Aurora MySQL
					dbs = append(dbs, database{Name: ident, Engine: "aurora-mysql", EngineVersion: "8.0.mysql_aurora.3.08.0", Kind: "cluster",
						Identifier: ident, ResourceID: "cluster-" + id(26, upper), Region: region, AccountID: "123456789012",
						Endpoint: fmt.Sprintf("%s.cluster-%s.rds.amazonaws.com", ident, host), Port: 3306, DBUsers: env.users, Labels: labels})
				case 3: // RDS for MySQL behind an RDS Proxy
					dbs = append(dbs, database{Name: ident, Engine: "mysql", EngineVersion: "8.0.39", Kind: "instance",
						Identifier: ident, ResourceID: "db-" + id(26, upper), Region: region, AccountID: "123456789012",
						Endpoint: fmt.Sprintf("%s.%s.rds.amazonaws.com", ident, host), Port: 3306, DBUsers: env.users, Labels: labels})
					dbs = append(dbs, database{Name: ident + "-proxy", Engine: "mysql", EngineVersion: "8.0.39", Kind: "proxy",
						Identifier: ident + "-proxy", ResourceID: "prx-" + id(17, "0123456789abcdef"), Region: region, AccountID: "123456789012",
						Endpoint: fmt.Sprintf("%s-proxy.proxy-%s.rds.amazonaws.com", ident, host), Port: 3306, DBUsers: env.users, Labels: labels})
				case 4: // RDS for MariaDB
					dbs = append(dbs, database{Name: ident, Engine: "mariadb", EngineVersion: "10.11.9", Kind: "instance",
						Identifier: ident, ResourceID: "db-" + id(26, upper), Region: region, AccountID: "123456789012",
						Endpoint: fmt.Sprintf("%s.%s.rds.amazonaws.com", ident, host), Port: 3306, DBUsers: env.users, Labels: labels})
				default: // RDS for PostgreSQL
					dbs = append(dbs, database{Name: ident, Engine: "postgres", EngineVersion: "16.4", Kind: "instance",
						Identifier: ident, ResourceID: "db-" + id(26, upper), Region: region, AccountID: "123456789012",
						Endpoint: fmt.Sprintf("%s.%s.rds.amazonaws.com", ident, host), Port: 5432, DBUsers: env.users, Labels: labels})
				}
			}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"databases": dbs}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
