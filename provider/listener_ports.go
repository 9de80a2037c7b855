package provider

import (
	"context"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rdsgate/rdsgate/internal/proxyconf"
)

func newListenerPortsResource() resource.Resource { return &listenerPortsResource{} }

// listenerPortsResource remembers which listener port each database was
// given, so that a port never moves when the fleet changes: a data source
// recomputes from scratch on every plan and cannot.
type listenerPortsResource struct{}

type listenerPortsModel struct {
	Databases types.Set   `tfsdk:"databases"`
	FirstPort types.Int64 `tfsdk:"first_port"`
	Pinned    types.Map   `tfsdk:"pinned"`
	Ports     types.Map   `tfsdk:"ports"`
}

func (r *listenerPortsResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_listener_ports"
}

func (r *listenerPortsResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The proxy's listener port for each database, kept from one apply to the next: a database keeps " +
			"its port while it exists (a moved port sends clients to another database, perhaps of another engine), a new " +
			"one takes the lowest free port from `first_port`, and `pinned` fixes ports by hand. Pass `ports` to " +
			"`rdsgate_proxy_config`. Nothing in AWS is read or written; the plan shows the exact ports.",
		Attributes: map[string]schema.Attribute{
			"databases": schema.SetAttribute{Required: true, ElementType: types.StringType,
				MarkdownDescription: "Names of the databases the proxy serves."},
			"first_port": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(15432),
				MarkdownDescription: "Where new databases' ports start (default 15432). Changing it moves no existing port."},
			"pinned": schema.MapAttribute{Optional: true, ElementType: types.Int64Type,
				MarkdownDescription: "Ports fixed by hand, by database name. A pin that takes another database's port is an error at plan time: pin that one elsewhere too to move it deliberately."},
			"ports": schema.MapAttribute{Computed: true, ElementType: types.Int64Type,
				MarkdownDescription: "The port of each database."},
		},
	}
}

// assign works out the ports from the configuration and what the state
// held; it reports whether everything it needs is known.
func (r *listenerPortsResource) assign(ctx context.Context, m *listenerPortsModel, prior map[string]int, diags *diagsT) bool {
	names, known := stringsOf(ctx, m.Databases, diags)
	pins, pinsKnown := intsOf(ctx, m.Pinned, diags)
	if !known || !pinsKnown || m.FirstPort.IsUnknown() || diags.HasError() {
		return false
	}
	slices.Sort(names)
	ports, err := proxyconf.AssignPorts(names, int(m.FirstPort.ValueInt64()), pins, prior)
	if err != nil {
		attr := path.Root("pinned")
		if strings.Contains(err.Error(), "no free port") {
			attr = path.Root("first_port")
		}
		diags.AddAttributeError(attr, "Listener ports conflict", strings.TrimPrefix(tfText(err), "invalid input: "))
		return false
	}
	vals := make(map[string]attr.Value, len(ports))
	for k, v := range ports {
		vals[k] = types.Int64Value(int64(v))
	}
	m.Ports = types.MapValueMust(types.Int64Type, vals)
	return true
}

func (r *listenerPortsResource) prior(ctx context.Context, state interface {
	GetAttribute(context.Context, path.Path, any) diagsT
}, diags *diagsT) map[string]int {
	var ports types.Map
	diags.Append(state.GetAttribute(ctx, path.Root("ports"), &ports)...)
	out, known := intsOf(ctx, ports, diags)
	if !known {
		return map[string]int{}
	}
	return out
}

// ModifyPlan puts the exact ports in the plan, so a reviewer sees which
// database gets which port before anything is applied.
func (r *listenerPortsResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	var m listenerPortsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	prior := map[string]int{}
	if !req.State.Raw.IsNull() {
		prior = r.prior(ctx, req.State, &resp.Diagnostics)
	}
	if r.assign(ctx, &m, prior, &resp.Diagnostics) {
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &m)...)
	}
}

func (r *listenerPortsResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m listenerPortsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Ports.IsUnknown() && !r.assign(ctx, &m, map[string]int{}, &resp.Diagnostics) {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *listenerPortsResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m listenerPortsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Ports.IsUnknown() && !r.assign(ctx, &m, r.prior(ctx, req.State, &resp.Diagnostics), &resp.Diagnostics) {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// Read keeps what the state holds: the assignment lives nowhere else.
func (r *listenerPortsResource) Read(context.Context, resource.ReadRequest, *resource.ReadResponse) {}

func (r *listenerPortsResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {
}
