package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what one run of the demo found.
type Result struct {
	NATSURL string // the embedded server's client URL
	WebURL  string // the engine's HTTP endpoints and web view
	WarmUp  time.Duration
	Phases  []PhaseResult
}

// PhaseResult is one fault: what was expected, whether it was detected
// and how fast, and whether it ended.
type PhaseResult struct {
	Fault    string // "node failure", "partition", "bottleneck", "overload"
	Target   string // "orders-eu-2", "group us", "every node"
	Expected string // "node.down node-failure (orders-eu-2)"
	// Detected: every expected down event arrived (one incident).
	Detected     bool
	TimeToDetect time.Duration // from the injection to the last expected down
	// Recovered: every expected down was ended by its up event.
	Recovered     bool
	TimeToRecover time.Duration // from the recovery to the last up
	// Settled: the flow was judged healthy again, nothing open, before the
	// next fault.
	Settled bool
	// Unexpected lists every other down event from the injection until
	// the flow settled, e.g. "node.down flapping orders-eu-2"; when the
	// expected events did not all come, every down event seen.
	Unexpected []string
}

// OK reports whether the fault was detected as expected, with nothing
// else reported, and recovered.
func (p PhaseResult) OK() bool { return p.Detected && p.Recovered && len(p.Unexpected) == 0 }

// Faults is how many faults a full run injects.
const Faults = 4

// OK reports whether every fault was injected, detected with the expected
// pattern and nothing else, and recovered.
func (r *Result) OK() bool {
	if r == nil || len(r.Phases) != Faults {
		return false
	}
	for _, p := range r.Phases {
		if !p.OK() {
			return false
		}
	}
	return true
}

// SummaryHeader is the header row of the summary table.
var SummaryHeader = []string{"FAULT INJECTED", "EVENT EXPECTED", "DETECTED", "TIME TO DETECT", "RECOVERED"}

// WriteSummary writes the summary table of r.
func WriteSummary(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(SummaryHeader, "\t"))
	for _, p := range r.Phases {
		detected := "no"
		ttd := "-"
		if p.Detected {
			detected, ttd = "yes", secs(p.TimeToDetect)
		}
		if len(p.Unexpected) > 0 {
			detected += " (saw " + strings.Join(p.Unexpected, ", ") + ")"
		}
		recovered := "no"
		switch {
		case !p.Detected:
			recovered = "-"
		case p.Recovered:
			recovered = "yes, in " + secs(p.TimeToRecover)
		}
		if !p.Settled {
			recovered += " (flow did not settle)"
		}
		fmt.Fprintf(tw, "%s: %s\t%s\t%s\t%s\t%s\n", p.Fault, p.Target, p.Expected, detected, ttd, recovered)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// writeSummary prints the table and the verdict.
func (d *demo) writeSummary(r *Result) {
	d.printf("\nsummary:\n")
	var b strings.Builder
	_ = WriteSummary(&b, r) // a strings.Builder does not fail
	d.printf("%s", b.String())
	if r.OK() {
		d.printf("%s every fault was detected with the expected pattern and recovered; web view: %s\n", d.mark("✓", green), r.WebURL)
	} else {
		d.printf("%s not every fault was detected as expected and recovered\n", d.mark("✗", red))
	}
}

// ANSI colours of the marks.
const (
	red   = "31"
	green = "32"
	cyan  = "36"
)

// mark is s, in colour on a terminal.
func (d *demo) mark(s, color string) string {
	if !d.cfg.Color {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}
