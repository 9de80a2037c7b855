package provider

import (
	"context"
	"errors"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/policies"
)

type diagsT = diag.Diagnostics

// addError reports err; a policies.FieldError points at its attribute, so
// Terraform shows the problem next to the line that causes it.
func addError(diags *diag.Diagnostics, summary string, err error) {
	var fe *policies.FieldError
	if errors.As(err, &fe) {
		diags.AddAttributeError(path.Root(fe.Field), summary, fe.Reason)
		return
	}
	diags.AddError(summary, tfText(err))
}

// strings reads a list or set of strings; unknown and null read as nil with
// known=false for unknown.
func stringsOf(ctx context.Context, v interface {
	IsNull() bool
	IsUnknown() bool
	ElementsAs(context.Context, any, bool) diag.Diagnostics
}, diags *diag.Diagnostics) (out []string, known bool) {
	if v.IsUnknown() {
		return nil, false
	}
	if v.IsNull() {
		return nil, true
	}
	var elems []types.String
	diags.Append(v.ElementsAs(ctx, &elems, true)...)
	for _, e := range elems {
		if e.IsUnknown() {
			return nil, false
		}
		out = append(out, e.ValueString())
	}
	return out, true
}

func mapOf(ctx context.Context, v types.Map, diags *diag.Diagnostics) (map[string]string, bool) {
	if v.IsUnknown() {
		return nil, false
	}
	out := map[string]string{}
	if v.IsNull() {
		return out, true
	}
	var elems map[string]types.String
	diags.Append(v.ElementsAs(ctx, &elems, true)...)
	for k, e := range elems {
		if e.IsUnknown() {
			return nil, false
		}
		out[k] = e.ValueString()
	}
	return out, true
}

func stringList(items []string) types.List {
	vals := make([]attr.Value, len(items))
	for i, s := range items {
		vals[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, vals)
}

func stringSet(items []string) types.Set {
	vals := make([]attr.Value, len(items))
	for i, s := range items {
		vals[i] = types.StringValue(s)
	}
	return types.SetValueMust(types.StringType, vals)
}

func stringMap(m map[string]string) types.Map {
	vals := make(map[string]attr.Value, len(m))
	for k, v := range m {
		vals[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, vals)
}

// docJSON is a policy document in rdsgate's compact form, as rdsgate writes
// it. What IAM holds is compared by meaning (keepIfEquivalent), so a
// reformatted document shows no diff.
func docJSON(d *policies.Document) string {
	if d == nil {
		return ""
	}
	return string(d.JSON())
}

// keepIfEquivalent returns prior when it means the same as actual (so a
// reordered or reformatted document makes no diff), else actual.
func keepIfEquivalent(prior string, actual *policies.Document) string {
	if actual == nil {
		return ""
	}
	if prior != "" {
		if p, err := policies.Parse([]byte(prior)); err == nil && policies.Equivalent(p, actual) {
			return prior
		}
	}
	return docJSON(actual)
}

// intsOf reads a map of numbers; null reads as empty, and unknown (the
// map or an element) as known=false.
func intsOf(ctx context.Context, v types.Map, diags *diag.Diagnostics) (map[string]int, bool) {
	out := map[string]int{}
	if v.IsUnknown() {
		return nil, false
	}
	if v.IsNull() {
		return out, true
	}
	var elems map[string]types.Int64
	diags.Append(v.ElementsAs(ctx, &elems, false)...)
	for k, e := range elems {
		if e.IsUnknown() {
			return nil, false
		}
		out[k] = int(e.ValueInt64())
	}
	return out, true
}

// priorString is a string attribute of the prior state ("" when there is
// none: a create). Plans keep a document's prior text when it means the
// same as the desired one, so a policy that IAM holds, or an import
// brought in, in another form plans no diff.
func priorString(ctx context.Context, state tfsdk.State, attr string, diags *diag.Diagnostics) string {
	if state.Raw.IsNull() {
		return ""
	}
	var v types.String
	diags.Append(state.GetAttribute(ctx, path.Root(attr), &v)...)
	return v.ValueString()
}

// mergeTags returns the provider's default tags overlaid with the resource's.
func mergeTags(defaults, own map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}

// upsert is Create and Update of the resources whose two are the same:
// read the plan into a model, let write make AWS hold it and fill in what
// it learned, and save the model as the new state.
func upsert[M any](ctx context.Context, plan tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics, write func(*M)) {
	var m M
	diags.Append(plan.Get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	write(&m)
	if !diags.HasError() {
		diags.Append(state.Set(ctx, &m)...)
	}
}
