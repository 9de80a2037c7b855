// Command tfrc builds terraform-provider-rdsgate and writes a Terraform CLI
// configuration that uses it offline (a filesystem mirror and
// dev_overrides): `make terraform-dev`, the demo and the docs use it.
//
//	go run ./internal/testenv/tfrc -dir .tmp/terraform
//	export TF_CLI_CONFIG_FILE=$PWD/.tmp/terraform/terraformrc
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

func main() {
	dir := flag.String("dir", ".tmp/terraform", "where to put the provider and the terraformrc")
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err == nil {
		err = testenv.WriteTerraformRC(abs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tfrc:", err)
		os.Exit(1)
	}
	fmt.Println(filepath.Join(abs, "terraformrc"))
}
