#!/usr/bin/env bash
# Generates the provider's documentation with tfplugindocs from the schema
# descriptions and examples/, offline: the schema comes from the provider
# just built through the real terraform binary.
#
#   scripts/provider-docs.sh [OUT]   # OUT defaults to docs/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rc=$(cd "$root" && go run ./internal/testenv/tfrc -dir "$tmp/terraform")
(cd "$root/tools" && go build -o "$tmp/tfplugindocs" github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs)

mkdir -p "$tmp/schema"
cat >"$tmp/schema/main.tf" <<'HCL'
terraform {
  required_providers {
    rdsgate = { source = "rdsgate/rdsgate" }
  }
}
HCL
(cd "$tmp/schema" && TF_CLI_CONFIG_FILE=$rc CHECKPOINT_DISABLE=1 terraform providers schema -json >"$tmp/schema.json" 2>"$tmp/schema.err") || {
	cat "$tmp/schema.err" >&2
	exit 1
}

# tfplugindocs looks the provider up by its short name.
sed -i 's#"registry.terraform.io/rdsgate/rdsgate"#"rdsgate"#' "$tmp/schema.json"

# tfplugindocs writes into the provider directory; give it a copy.
mkdir -p "$tmp/provider"
cp -r "$root/examples" "$tmp/provider/examples"
[ -d "$root/templates" ] && cp -r "$root/templates" "$tmp/provider/templates"
(cd "$tmp/provider" && "$tmp/tfplugindocs" generate --provider-name rdsgate --rendered-provider-name rdsgate \
	--providers-schema "$tmp/schema.json" >"$tmp/docs.log" 2>&1) || {
	cat "$tmp/docs.log" >&2
	exit 1
}
mkdir -p "$out"
rm -rf "$out/resources" "$out/data-sources"
cp -r "$tmp/provider/docs/." "$out/"
