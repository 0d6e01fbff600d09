package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/happen-dev/happen/internal/demo"
	"github.com/spf13/cobra"
)

type demoFlags struct {
	interval       time.Duration
	http           string
	embeddedListen string
	data           string
	keep           bool
	logLevel       string
}

func newDemoCmd() *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch happen detect a node failure, a partition, a bottleneck and an overload, live",
		Long: `Run a self-contained demo: an embedded NATS server, six nodes in two
groups (eu and us) with real traffic, and the engine with the built-in
rules, all in this process. Four real faults are injected in turn, each
followed by recovery: a node's worker stops, group us is cut off, a node
slows below its arrivals, publishing rises above what every node handles.
Every event is shown as it arrives, and a table at the end says what was
detected and how fast. It takes a little over a minute.

The engine's HTTP endpoints, the web view at /, listen at the printed URL
for the whole run; --keep leaves everything running after the summary.
Exit status 0 when every fault was detected with the expected pattern and
recovered, 1 otherwise.`,
		Example: `  happen demo
  happen demo --keep                    # explore the web view afterwards; Ctrl-C to stop
  happen demo --http 127.0.0.1:9466     # the web view on a fixed port
  happen demo --log-level info          # the engine's logs too, on stderr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), f)
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&f.interval, "interval", time.Second, "how often flow is sampled (the built-in rules are stated for 1s)")
	fs.StringVar(&f.http, "http", "127.0.0.1:0", "address for the web view and /metrics, /healthz, /api/status (port 0 picks a free port)")
	fs.StringVar(&f.embeddedListen, "embedded-listen", "127.0.0.1:0", "where the embedded NATS server listens (port 0 picks a free port)")
	fs.StringVar(&f.data, "data", "", "embedded server storage, kept afterwards (default: a temporary folder, removed at the end)")
	fs.BoolVar(&f.keep, "keep", false, "after the summary, keep everything running until Ctrl-C")
	fs.StringVar(&f.logLevel, "log-level", "warn", "engine and server logs on stderr: debug, info, warn or error")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, f *demoFlags) error {
	log, err := newLogger(f.logLevel, "text")
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if f.interval < 10*time.Millisecond {
		return &exitError{code: 2, err: fmt.Errorf("--interval %v is too short (minimum 10ms)", f.interval)}
	}
	res, err := demo.Run(ctx, demo.Config{
		Interval:       f.interval,
		HTTP:           f.http,
		EmbeddedListen: f.embeddedListen,
		DataDir:        f.data,
		Keep:           f.keep,
		Out:            out,
		Color:          demoColor(out),
		Logger:         log.With("component", "demo"),
	})
	if err != nil {
		if errors.Is(err, context.Canceled) && res != nil {
			fmt.Fprintf(out, "\nstopped after %d of %d faults\n", len(res.Phases), demo.Faults)
		}
		return &exitError{code: 1, err: fmt.Errorf("happen demo: %w", err)}
	}
	if !res.OK() {
		return &exitError{code: 1, err: errors.New("happen demo: not every fault was detected with the expected pattern and recovered")}
	}
	return nil
}

// demoColor reports whether out is a terminal that takes colour: a
// character device, with NO_COLOR unset and TERM not dumb.
func demoColor(out io.Writer) bool {
	file, ok := out.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
