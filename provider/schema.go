package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
)

// The two plan modifiers most string attributes of these resources carry.
var (
	// keptFromState: a computed value (an id, an ARN) stays as it is in
	// state across plans instead of showing "(known after apply)".
	keptFromState = []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	// replaces: changing the attribute replaces the resource.
	replaces = []planmodifier.String{stringplanmodifier.RequiresReplace()}
)
