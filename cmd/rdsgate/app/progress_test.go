package app

import (
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

func TestProgress(t *testing.T) {
	t.Parallel()
	steps := []bootstrap.StepResult{
		{Step: policies.Step{Phase: policies.PhasePrepare, Action: policies.ActionCreateRole, Kind: policies.PrincipalRole, Principal: "p-shard-001"}, Writes: 1},
		{Step: policies.Step{Phase: policies.PhaseGrant, Action: policies.ActionPutManaged, Kind: policies.PrincipalRole, Principal: "p", Policy: "p-connect-01", Adds: []string{"a", "b"}}, Writes: 2},
		{Step: policies.Step{Phase: policies.PhaseRevoke, Action: policies.ActionDeleteInline, Kind: policies.PrincipalRole, Principal: "p", Policy: "rdsgate-connect", Removes: []string{"c"}}},
	}
	var lines, bar strings.Builder
	for _, pr := range []struct {
		p bootstrap.Progress
		w *strings.Builder
	}{{newProgress(&lines, false), &lines}, {newProgress(&bar, true), &bar}} {
		pr.p.Start(len(steps))
		for i, s := range steps {
			pr.p.Step(i, s, nil)
		}
		pr.p.Note("waiting for IAM")
		pr.p.Done()
	}
	wantLines := "[1/3] prepare create_role role p-shard-001: 1 write, 0s\n" +
		"[2/3] grant   put_managed_policy role p / p-connect-01 (+2): 2 writes, 0s\n" +
		"[3/3] revoke  delete_inline_policy role p / rdsgate-connect (-1): already done\n" +
		"... waiting for IAM\n"
	if lines.String() != wantLines {
		t.Errorf("lines:\n%q\nwant\n%q", lines.String(), wantLines)
	}
	if b := bar.String(); strings.Count(b, "\r\033[K") != 5 || !strings.Contains(b, "[==============================] 3/3") || !strings.Contains(b, "3 steps in") || strings.Count(b, "\n") != 2 {
		t.Errorf("bar: %q", b)
	}
}
