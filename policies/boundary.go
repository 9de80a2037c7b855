package policies

import (
	"fmt"
	"sort"
	"strings"
)

// A permissions boundary caps everything a principal may do, not only what
// rdsgate grants: set on a role that already has other policies, it takes
// away every action of theirs it does not allow too. IAM shows nothing for
// it; the actions simply fail with AccessDenied. BoundaryCuts finds them
// before the boundary is set.

// Cut is an action a principal's other policy allows that the boundary
// would deny, written as the policy writes it ("s3:*" stays "s3:*").
type Cut struct {
	Policy string // "inline NAME" or "managed ARN"
	Action string
}

// BoundaryCuts lists the actions the principal's other policies allow
// (others, by "inline NAME" or "managed ARN") that boundary does not allow
// on the same resources. A statement with NotAction allows nearly
// everything, and is reported as such. Conditions are not evaluated: an
// allow in the boundary that needs one counts as denying, so a cut may be
// reported that a request with the right context would pass, never the
// other way round.
func BoundaryCuts(boundary *Document, others map[string]*Document) []Cut {
	var cuts []Cut
	for _, name := range sortedDocNames(others) {
		seen := map[string]bool{}
		for _, st := range others[name].Statements {
			for _, a := range cutActions(boundary, st) {
				if !seen[a] {
					seen[a] = true
					cuts = append(cuts, Cut{Policy: name, Action: a})
				}
			}
		}
	}
	return cuts
}

// cutActions lists the actions of one statement the boundary cuts.
func cutActions(boundary *Document, st Statement) []string {
	if st.Effect != Allow {
		return nil
	}
	resources := st.Resource.List
	if !st.Resource.Present() {
		resources = []string{"*"} // NotResource: nearly every resource
	}
	actions := st.Action.List
	if st.NotAction.Present() {
		// Every action but a few: probe with one of no real service, which
		// only a boundary that allows any action (Action "*", a NotAction
		// of its own) allows too.
		if anyMatch(st.NotAction.List, notActionProbe, true) {
			return nil
		}
		actions = []string{notActionProbe}
	}
	var out []string
	for _, probe := range actions {
		a := probe
		if probe == notActionProbe {
			a = "every action but " + strings.Join(st.NotAction.List, ", ")
		}
		for _, r := range resources {
			if Evaluate([]*Document{boundary}, Request{Action: probe, Resource: r}) != Allowed {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// notActionProbe stands for "any action" when a statement uses NotAction.
const notActionProbe = "rdsgate-probe:AnyAction"

// KeepStatements returns the statements of the other policies that the
// boundary cuts, to add to the boundary so that setting it takes nothing
// away: a boundary only caps, so they grant nothing the principal did not
// have. Sids become Keep1, Keep2, ... (a boundary's Sids must be unique).
func KeepStatements(boundary *Document, others map[string]*Document) []Statement {
	var out []Statement
	for _, name := range sortedDocNames(others) {
		for _, st := range others[name].Statements {
			if len(cutActions(boundary, st)) == 0 {
				continue
			}
			st.Sid = fmt.Sprintf("Keep%d", len(out)+1)
			out = append(out, st)
		}
	}
	return out
}

// DescribeCuts says which actions of which policies a boundary cuts, for a
// warning: "logs:PutLogEvents, ssm:UpdateInstanceInformation (inline
// platform-agents); s3:GetObject (managed arn:...)".
func DescribeCuts(cuts []Cut) string {
	var parts []string
	for i := 0; i < len(cuts); {
		j := i
		var actions []string
		for ; j < len(cuts) && cuts[j].Policy == cuts[i].Policy; j++ {
			actions = append(actions, cuts[j].Action)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", strings.Join(actions, ", "), cuts[i].Policy))
		i = j
	}
	return strings.Join(parts, "; ")
}

func sortedDocNames(m map[string]*Document) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
