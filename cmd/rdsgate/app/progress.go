package app

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

// newProgress picks a bar for a terminal and plain lines otherwise (CI logs).
func newProgress(w io.Writer, terminal bool) bootstrap.Progress {
	if terminal {
		return &bar{w: w}
	}
	return &lines{w: w}
}

type lines struct {
	w     io.Writer
	total int
}

func (l *lines) Start(total int) { l.total = total }

func (l *lines) Step(i int, r bootstrap.StepResult, err error) {
	status := fmt.Sprintf("%s, %s", policies.Count(r.Writes, "write"), r.Elapsed.Round(time.Millisecond))
	if r.Writes == 0 {
		status = "already done"
	}
	if err != nil {
		status = "failed"
	}
	fmt.Fprintf(l.w, "[%*d/%d] %-7s %s\n", len(fmt.Sprint(l.total)), i+1, l.total, r.Step.Phase, r.Step.String()+": "+status)
}

func (l *lines) Note(msg string) { fmt.Fprintf(l.w, "... %s\n", msg) }

func (l *lines) Done() {}

type bar struct {
	w     io.Writer
	total int
	start time.Time
}

func (b *bar) Start(total int) { b.total, b.start = total, time.Now() }

func (b *bar) Step(i int, r bootstrap.StepResult, err error) {
	const width = 30
	done := (i + 1) * width / max(b.total, 1)
	label := r.Step.String()
	if len(label) > 60 {
		label = label[:57] + "..."
	}
	fmt.Fprintf(b.w, "\r\033[K[%s%s] %d/%d %s", strings.Repeat("=", done), strings.Repeat(" ", width-done), i+1, b.total, label)
	if err != nil {
		fmt.Fprintln(b.w)
	}
}

// Note keeps waits on lines of their own, so the bar does not hide them.
func (b *bar) Note(msg string) { fmt.Fprintf(b.w, "\r\033[K... %s\n", msg) }

func (b *bar) Done() {
	if b.total > 0 {
		fmt.Fprintf(b.w, "\r\033[K%s in %s\n", policies.Count(b.total, "step"), time.Since(b.start).Round(time.Millisecond))
	}
}
