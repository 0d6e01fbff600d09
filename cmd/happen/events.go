package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/internal/eventline"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

type eventsFlags struct {
	conn    connFlags
	types   []string
	node    string
	pattern string
	since   string
	count   int
	output  string
	color   string
}

func newEventsCmd() *cobra.Command {
	f := &eventsFlags{}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the engine's events as they arrive, one line each",
		Long: `Follow the events a running engine publishes on <subject-prefix>.<type>,
one line each: local time, type, node (or "system"), pattern, level, the
end of the correlation id (shared by every event of one incident) and the
key figures. -o json prints the raw envelopes, one per line.

--since first prints the matching events the engine published in that
time (it remembers its last 1000), then follows live ones without
repeating any. Runs until interrupted, or until --count events.`,
		Example: `  # Everything, live
  happen events

  # Node incidents of the last 10 minutes, then live ones
  happen events --type 'node.*' --since 10m

  # One node, through a nats CLI context
  happen events --context prod --node orders-eu-1

  # In a script: wait for the next node.down and print its envelope
  happen events --type node.down --count 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runEvents(ctx, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringSliceVar(&f.types, "type", nil, "only these event types; repeat or comma separate, globs like 'node.*' work")
	fs.StringVar(&f.node, "node", "", "only events about this node (its nodeId, or listed in affectedNodes)")
	fs.StringVar(&f.pattern, "pattern", "", "only events of this pattern")
	fs.StringVar(&f.since, "since", "", "first print the engine's recent events from this long ago (10m) or this time (RFC 3339)")
	fs.IntVar(&f.count, "count", 0, "exit after this many events (0: run until interrupted)")
	fs.StringVarP(&f.output, "output", "o", "text", "text, or json for the raw envelopes")
	fs.StringVar(&f.color, "color", "auto", "auto (on a terminal unless NO_COLOR is set), always or never")
	return cmd
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--since %s: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (10m, 2h) or a time (2026-12-03T10:00:00Z)", s)
	}
	return at, nil
}

func runEvents(ctx context.Context, f *eventsFlags, out, errOut io.Writer) error {
	usage := func(err error) error { return &exitError{code: 2, err: err} }
	if f.output != "text" && f.output != "json" {
		return usage(fmt.Errorf("-o %q: want text or json", f.output))
	}
	var color bool
	switch f.color {
	case "auto":
		_, noColor := os.LookupEnv("NO_COLOR")
		color = !noColor && isTerminal(out)
	case "always":
		color = true
	case "never":
	default:
		return usage(fmt.Errorf("--color %q: want auto, always or never", f.color))
	}
	if f.count < 0 {
		return usage(fmt.Errorf("--count %d: want 0 (no limit) or more", f.count))
	}
	since, err := parseSince(f.since, time.Now())
	if err != nil {
		return usage(err)
	}
	filter := engine.EventFilter{Types: f.types, Node: f.node, Pattern: f.pattern}
	if err := filter.Validate(); err != nil {
		return usage(fmt.Errorf("--type: %w", err))
	}

	nc, err := f.conn.connect("happen events", true, errOut)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer nc.Close()

	// Subscribe before asking for history, so nothing falls between the two;
	// what arrives twice is printed once.
	msgs := make(chan *nats.Msg, 4096)
	all := f.conn.prefix + ".>"
	sub, err := nc.ChanSubscribe(all, msgs)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("subscribe to %s: %w", all, err)}
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(f.conn.timeout); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("subscribe to %s at %s: %w", all, nc.ConnectedUrlRedacted(), err)}
	}
	fmt.Fprintf(errOut, "following %s at %s\n", all, nc.ConnectedUrlRedacted())

	p := &eventPrinter{out: out, json: f.output == "json", opts: eventline.Options{Color: color}}
	var fromHistory map[string]bool
	if !since.IsZero() {
		var reply engine.EventsReply
		req := engine.EventsRequest{Since: engine.EventTime{Time: since}, Types: f.types, Node: f.node, Pattern: f.pattern}
		if f.count > 0 {
			req.Limit = f.count
		}
		err := f.conn.request(ctx, nc, engine.APIEvents, req, &reply)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// Live events may still come once an engine runs.
			fmt.Fprintf(errOut, "no history: %v\n", err)
		case reply.Omitted > 0:
			fmt.Fprintf(errOut, "%d older events left out: the reply would exceed the server's max_payload\n", reply.Omitted)
		}
		fromHistory = make(map[string]bool, len(reply.Events))
		past := filter
		past.Since = since
		for _, env := range reply.Events {
			if !past.Match(env) { // the engine filtered already; this costs nothing
				continue
			}
			fromHistory[env.Context.ID] = true
			if err := p.print(env, nil); err != nil {
				return err
			}
			if f.count > 0 && p.n >= f.count {
				return nil
			}
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if engine.IsAPISubject(f.conn.prefix, m.Subject) {
				continue // a request to an engine, not an event
			}
			var env events.Envelope
			if err := json.Unmarshal(m.Data, &env); err != nil || env.Type == "" {
				fmt.Fprintf(errOut, "skipping a message on %s that is not an event envelope\n", m.Subject)
				continue
			}
			if fromHistory[env.Context.ID] || !filter.Match(env) {
				continue
			}
			if err := p.print(env, m.Data); err != nil {
				return err
			}
			if f.count > 0 && p.n >= f.count {
				return nil
			}
		}
	}
}

// eventPrinter writes events as lines or as raw envelopes.
type eventPrinter struct {
	out  io.Writer
	json bool
	opts eventline.Options
	n    int
}

// print writes env; raw is its bytes as received, if it was.
func (p *eventPrinter) print(env events.Envelope, raw []byte) error {
	var line []byte
	if p.json {
		var b bytes.Buffer
		if raw == nil || json.Compact(&b, raw) != nil {
			b.Reset()
			enc, _ := json.Marshal(env)
			b.Write(enc)
		}
		line = append(b.Bytes(), '\n')
	} else {
		line = []byte(strings.TrimRight(eventline.Format(env, p.opts), "\n") + "\n")
	}
	if _, err := p.out.Write(line); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	p.n++
	return nil
}
