//go:build tools

// Package tools pins the documentation generator in a module of its own, so
// its dependencies do not move the provider's.
package tools

import (
	_ "github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs"
)
