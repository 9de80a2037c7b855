// Command rdsgate gives people and services IAM-authenticated access to AWS
// RDS and Aurora databases: it prints and creates the proxy's IAM policy,
// plans and applies size-aware policy shards, and runs the proxy.
package main

import (
	"context"
	"os"

	"github.com/rdsgate/rdsgate/cmd/rdsgate/app"
)

func main() {
	os.Exit(app.Execute(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}
