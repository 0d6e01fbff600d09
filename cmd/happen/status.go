package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

type statusFlags struct {
	conn     connFlags
	group    string
	node     string
	trouble  bool
	limit    int
	output   string
	watch    bool
	interval time.Duration
	pageSize int
}

func newStatusCmd() *cobra.Command {
	f := &statusFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print every node, its group, metrics and state, from a running engine",
		Long: `Ask a running engine, over NATS, for its view: every node sorted trouble
first (in an incident, stalled, falling behind), the groups and the open
incidents. It works wherever the engine's NATS is reachable, with the usual
NATS flags or a nats CLI context; no HTTP port is needed.

The engine answers on <subject-prefix>.api.status. Large deployments are
fetched page by page.`,
		Example: `  # The engine on this machine (or the nats CLI's selected context)
  happen status

  # A remote engine, through a nats CLI context, only nodes in trouble
  happen status --context prod --trouble

  # One group as JSON, from a remote server with credentials
  happen status -s nats://nats.internal:4222 --creds happen.creds --group eu -o json

  # Redraw every 2s until Ctrl-C
  happen status --watch --interval 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runStatus(ctx, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVar(&f.group, "group", "", "only the nodes of this group")
	fs.StringVar(&f.node, "node", "", "only this node (its id, consumer name or stream/consumer)")
	fs.BoolVar(&f.trouble, "trouble", false, "only nodes that are not ok")
	fs.IntVar(&f.limit, "limit", 0, "show at most this many nodes, trouble first (0: all)")
	fs.StringVarP(&f.output, "output", "o", "text", "text or json")
	fs.BoolVarP(&f.watch, "watch", "w", false, "redraw every --interval until interrupted")
	fs.DurationVar(&f.interval, "interval", 2*time.Second, "how often --watch refreshes")
	fs.IntVar(&f.pageSize, "page-size", 0, "nodes per request (0: the engine's default)")
	fs.MarkHidden("page-size")
	return cmd
}

func runStatus(ctx context.Context, f *statusFlags, out, errOut io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return &exitError{code: 2, err: fmt.Errorf("-o %q: want text or json", f.output)}
	}
	if f.limit < 0 || f.pageSize < 0 {
		return &exitError{code: 2, err: fmt.Errorf("--limit %d, --page-size %d: want 0 or more", f.limit, f.pageSize)}
	}
	if f.watch && f.interval < 100*time.Millisecond {
		return &exitError{code: 2, err: fmt.Errorf("--interval %v: want at least 100ms", f.interval)}
	}
	nc, err := f.conn.connect("happen status", f.watch, errOut)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer nc.Close()

	show := func() error {
		st, err := fetchStatus(ctx, f, nc)
		if err != nil {
			return err
		}
		if f.output == "json" {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		var b strings.Builder
		printStatus(&b, st, time.Now())
		_, err = io.WriteString(out, b.String())
		return err
	}
	if !f.watch {
		if err := show(); err != nil {
			return &exitError{code: 1, err: err}
		}
		return nil
	}
	redraw := isTerminal(out) && f.output == "text"
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		if redraw {
			io.WriteString(out, "\x1b[H\x1b[2J")
		}
		if err := show(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The engine may be restarting: say so and keep watching.
			fmt.Fprintf(errOut, "%s: %v\n", time.Now().Format("15:04:05"), err)
		}
		if !redraw && f.output == "text" {
			fmt.Fprintln(out)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fetchStatus asks the engine page by page until it has every matching
// node, or --limit of them.
//
// Every node is fetched in key order, from the last key received: that
// order holds from one engine tick to the next, so no node is fetched
// twice or skipped, and the whole is sorted trouble first here. With
// --limit only the first nodes in trouble order are wanted, which usually
// take one page; should they take more, a node is never shown twice.
func fetchStatus(ctx context.Context, f *statusFlags, nc *nats.Conn) (*engine.Status, error) {
	var merged *engine.Status
	seen := map[flow.NodeKey]bool{}
	req := engine.StatusRequest{Group: f.group, Node: f.node, Trouble: f.trouble, Limit: f.pageSize}
	if f.limit == 0 {
		req.Order = engine.OrderKey
	}
	for {
		if f.limit > 0 {
			want := f.limit - len(seen)
			if req.Limit == 0 || req.Limit > want {
				req.Limit = want
			}
		}
		var page engine.Status
		if err := f.conn.request(ctx, nc, engine.APIStatus, req, &page); err != nil {
			return nil, err
		}
		nodes := page.Nodes
		page.Nodes = nil
		if merged == nil {
			merged = &page
		}
		merged.Total = page.Total
		for _, n := range nodes {
			n.Key = flow.NodeKey{Stream: n.Stream, Consumer: n.Consumer} // not on the wire
			if !seen[n.Key] {
				seen[n.Key] = true
				merged.Nodes = append(merged.Nodes, n)
			}
		}
		// An empty page ends it too: nodes may have gone meanwhile.
		if len(nodes) == 0 || page.Offset+len(nodes) >= page.Total || (f.limit > 0 && len(seen) >= f.limit) {
			break
		}
		if req.Order == engine.OrderKey {
			last := nodes[len(nodes)-1]
			req.After = last.Stream + "/" + last.Consumer
		} else {
			req.Offset = page.Offset + len(nodes)
		}
	}
	if merged.Nodes == nil {
		merged.Nodes = []engine.NodeStatus{}
	}
	engine.SortTrouble(merged.Nodes)
	if f.limit == 0 {
		merged.Total = len(merged.Nodes)
	}
	merged.Offset = 0
	return merged, nil
}

// printStatus writes st as a header line and tables: nodes, groups, open
// incidents.
func printStatus(w io.Writer, st *engine.Status, now time.Time) {
	health := "ok"
	if !st.Healthy {
		health = "UNHEALTHY (" + st.Reason + ")"
	} else if st.Blind {
		health = "BLIND (" + st.Reason + ")"
	}
	troubled := 0
	for i := range st.Nodes {
		if st.Nodes[i].Troubled() {
			troubled++
		}
	}
	sampled := "never"
	if !st.At.IsZero() {
		sampled = st.At.Local().Format("15:04:05") + " (" + ago(now.Sub(st.At)) + " ago)"
	}
	role := ""
	switch {
	case st.Leader == "":
	case st.Role == engine.RoleLeader:
		role = " · leader " + st.Leader
	default:
		role = " · " + st.Role + " (leader " + st.Leader + ")"
	}
	if len(st.Members) > 1 {
		role += fmt.Sprintf(" · streams shared by %d engines", len(st.Members))
	}
	fmt.Fprintf(w, "engine %s%s · sampled %s · %s · %s, %d in trouble · %s\n", health, role, sampled,
		plural(st.Rules.Count, "rule"), plural(st.System.Nodes, "node"), troubled, plural(len(st.Incidents), "open incident"))
	if len(st.Unobserved) > 0 {
		fmt.Fprintf(w, "%d nodes not read on the last sample: %s\n", len(st.Unobserved), list(st.Unobserved, 5))
	}
	if sys := st.System; sys.ServerSignals && (sys.ServersDown > 0 || sys.RoutesLost > 0) {
		fmt.Fprintf(w, "servers: %s down (%d announced), %s lost\n",
			plural(sys.ServersDown, "server"), sys.ServersAnnouncedDown, plural(sys.RoutesLost, "route"))
	}

	fmt.Fprintln(w)
	if len(st.Nodes) == 0 {
		fmt.Fprintln(w, "no nodes match")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tGROUP\tSTATE\tPATTERN\tWAITING\tPENDING\tTIME LAG\tDRAIN IN\tACK/S\tDELIVERY/S\tGROWTH/S\tCADENCE/STALL\tSINCE ACK")
		for i := range st.Nodes {
			n := &st.Nodes[i]
			cadence := "?"
			if n.CadenceLearned {
				cadence = secs(n.AckCadence)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\n",
				n.ID, dashIfEmpty(n.Group), nodeState(n), dashIfEmpty(n.Pattern), n.MessagesWaiting, n.NumPending,
				timeLag(n), drainIn(n.SecondsToDrain), rate(n.AckRate), rate(n.DeliveryRate), rate(n.LagGrowthRate), cadence, secs(n.StallThreshold), secs(n.SecondsSinceLastAck))
		}
		tw.Flush()
		if more := st.Total - len(st.Nodes); more > 0 {
			fmt.Fprintf(w, "... and %d more (--limit 0 shows every node)\n", more)
		}
	}

	if len(st.Groups) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tNODES\tJUDGED\tIDLE\tSTALLED\tBEHIND\tLAGGING\tWAITING\tACK/S\tARRIVAL/S")
		for _, g := range st.Groups {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", g.Name, g.Size, g.Judged, g.Idle, g.Stalled,
				g.FallingBehind, g.Lagging, g.MessagesWaiting, rate(g.AckRate), rate(g.ArrivalRate))
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	if len(st.Incidents) == 0 {
		fmt.Fprintln(w, "no open incidents")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INCIDENT\tPATTERN\tRULE\tLEVEL\tAGE\tNODES")
	for _, inc := range st.Incidents {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortIncident(inc.ID), inc.Pattern, inc.Rule, inc.Level,
			ago(now.Sub(inc.Since)), list(inc.Nodes, 5))
	}
	tw.Flush()
}

// nodeState is one word for a node's state, with the level when it is in
// an incident.
func nodeState(n *engine.NodeStatus) string {
	switch {
	case n.State == "down" && n.Level != "":
		return "down (" + n.Level + ")"
	case n.State != "ok":
		return n.State
	case n.Stalled:
		return "stalled"
	case n.FallingBehind:
		return "behind"
	case n.Lagging:
		return "lagging"
	case n.Warming:
		return "warming"
	case n.Idle:
		return "idle"
	}
	return "ok"
}

// shortIncident is the tail of an incident id, as happen events shows
// correlation ids.
func shortIncident(id string) string {
	if len(id) > 8 {
		id = id[len(id)-8:]
	}
	return "#" + id
}

func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return strings.Join(items[:n], ",") + fmt.Sprintf(" +%d more", len(items)-n)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func rate(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// timeLag is the node's time lag, marked ~ when estimated from the
// stream's publish times rather than read; - when nothing waits.
func timeLag(n *engine.NodeStatus) string {
	if n.MessagesWaiting == 0 {
		return "-"
	}
	if n.TimeLagEstimated {
		return "~" + secs(n.TimeLagSeconds)
	}
	return secs(n.TimeLagSeconds)
}

// drainIn is the time to drain; - while the backlog is not shrinking (-1).
func drainIn(s float64) string {
	if s < 0 {
		return "-"
	}
	return secs(s)
}

func secs(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "s" }

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
