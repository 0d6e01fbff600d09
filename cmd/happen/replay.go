package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/record"
	"github.com/happen-dev/happen/engine/replay"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/ruletest"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// recordFlags are `happen engine --record` and its rotation.
type recordFlags struct {
	file    string
	maxSize record.Size
	files   int
}

func (r *recordFlags) register(fs *pflag.FlagSet) {
	r.maxSize = record.DefaultMaxSize
	fs.StringVar(&r.file, "record", "", "record every sample to this file (JSON lines) for happen replay; appended to, rotated by size")
	fs.Var(&r.maxSize, "record-max-size", "rotate the recording when it would grow past this size (such as 64MB; KB, MB and GB count in 1024s)")
	fs.IntVar(&r.files, "record-files", record.DefaultKeep, "rotated recordings kept beside FILE, as FILE.1 (newest) ... FILE.N; 0 keeps none")
}

// open starts the recording, if asked for. The recorder is nil when not
// recording; stop closes it, flushing what is queued, once the engine has
// stopped.
func (r *recordFlags) open(interval time.Duration, log *slog.Logger) (rec engine.Recorder, stop func(), err error) {
	if r.file == "" {
		return nil, func() {}, nil
	}
	if r.maxSize < record.MinMaxSize {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("--record-max-size %s: want at least %s", r.maxSize, record.Size(record.MinMaxSize))}
	}
	if r.files < 0 {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("--record-files %d: want 0 or more", r.files)}
	}
	host, _ := os.Hostname() // the engine's instance name, as engine.New picks it
	w, err := record.Create(record.Config{
		Path: r.file, MaxSize: int64(r.maxSize), Keep: r.files,
		Interval: interval, Instance: host, Logger: log,
	})
	if err != nil {
		return nil, nil, &exitError{code: 1, err: err}
	}
	log.Info("recording every sample", "file", r.file, "maxSize", r.maxSize.String(), "files", r.files)
	return w, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.CloseContext(ctx); err != nil {
			log.Warn("recording", "file", r.file, "error", err)
		}
		if n := w.Dropped(); n > 0 {
			log.Warn("recording misses ticks the disk could not keep up with", "file", r.file, "dropped", n)
		}
	}, nil
}

type replayFlags struct {
	rules  string
	diff   string
	output string
	toTest string
}

func newReplayCmd() *cobra.Command {
	f := &replayFlags{}
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Run a recording (happen engine --record) through a ruleset and print the events",
		Long: `Run a recording made by happen engine --record through a ruleset, as fast as
it goes, with the engine's own flow tracker and rule evaluator: what is
printed is what the engine would have emitted had it run these rules.
FILE is the recording; given its base name, the rotated files FILE.N ...
FILE.1 are read first, so the whole recording replays in time order.

--rules is a ruleset file or folder, as for happen engine; builtin (the
default) is the ruleset built into happen.

Each event is one line: the time of the recorded tick it comes from (RFC
3339, milliseconds), its offset from the start of the recording, its type,
and node, pattern, rule, level (down events), reason and how long the
incident lasted (up events; no reason means its condition cleared) and
incident, which numbers the incidents in the order they began: the events
of one incident, a node.down and its node.up, share it. -o json prints one
JSON object per event instead. A summary goes to stderr.

--diff OTHER replays the recording through --rules (A) and OTHER (B) and
prints only what changes: "-" for an event only A emits, "+" for one only
B emits (events match by type, node and pattern, up to two intervals
apart), then a one-line summary. The exit code is 0 when nothing changes,
1 when something does and 2 on trouble, as for diff(1).

--to-test OUT.yaml writes a rules test (see happen rules test) whose
series reproduce the recording and whose expect list is what that test
emits, so it passes as written and freezes today's behaviour. A test is
sampled once per interval and models less than a recording holds; where
its events differ from the replay of the recording, a warning names them.`,
		Example: `  # Record what the engine samples; replay it through the built-in rules
  happen engine --record flow.rec
  happen replay flow.rec

  # Through your rules, as JSON
  happen replay --rules ./my-rules/ -o json flow.rec

  # What changes if the built-in rules are replaced by yours (exit 1 if anything)
  happen replay --rules builtin --diff ./my-rules/ flow.rec

  # Freeze a recorded incident as a rules test, and run it
  happen replay --to-test tests/incident.yaml --rules ./my-rules/ flow.rec
  happen rules test tests/incident.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return &exitError{code: 2, err: err}
			}
			return runReplay(cmd.OutOrStdout(), cmd.ErrOrStderr(), f, args[0])
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.rules, "rules", ruletest.Builtin, "ruleset file or folder to replay through; builtin is the ruleset built into happen")
	fs.StringVar(&f.diff, "diff", "", "a second ruleset (file, folder or builtin): print only the events that change from --rules to it")
	fs.StringVarP(&f.output, "output", "o", "text", "text or json")
	fs.StringVar(&f.toTest, "to-test", "", "write a rules test reproducing the recording to this file instead of printing events")
	return cmd
}

func runReplay(stdout, stderr io.Writer, f *replayFlags, file string) error {
	// diff(1) exits 2 on trouble, 1 on a difference.
	trouble := 1
	if f.diff != "" {
		trouble = 2
	}
	fail := func(code int, err error) error { return &exitError{code: code, err: err} }
	if f.output != "text" && f.output != "json" {
		return fail(2, fmt.Errorf("--output %q: want text or json", f.output))
	}
	if f.toTest != "" && f.diff != "" {
		return fail(2, errors.New("--to-test and --diff do not go together: a test has one ruleset"))
	}
	warn := func(s string) { fmt.Fprintln(stderr, "warning:", s) }
	set, err := replayRules(f.rules)
	if err != nil {
		return fail(trouble, err)
	}
	if f.toTest != "" {
		return writeTest(stdout, warn, f, set, file)
	}
	sets := []*rules.Set{set}
	if f.diff != "" {
		other, err := replayRules(f.diff)
		if err != nil {
			return fail(trouble, err)
		}
		sets = append(sets, other)
	}
	rp, err := replay.Open(file, warn, sets...)
	if err != nil {
		return fail(trouble, err)
	}
	for _, res := range rp.Results {
		for _, e := range res.RuleErrors {
			warn(e)
		}
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	if rp.Ticks+rp.Blind == 0 {
		fmt.Fprintf(stderr, "the recording holds no tick yet (engine instance %s, started %s)\n", rp.Header.Instance, rp.Header.Start.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(stderr, "replayed %d ticks (%d blind) over %s from %s\n", rp.Ticks, rp.Blind, rp.End.Sub(rp.Start).Round(time.Millisecond), rp.Start.UTC().Format(time.RFC3339))
	}

	if f.diff == "" {
		evs := rp.Results[0].Events
		for _, e := range evs {
			if f.output == "json" {
				out.Write(e.JSON(rp.Start))
				out.WriteByte('\n')
			} else {
				fmt.Fprintln(out, e.Line(rp.Start))
			}
		}
		fmt.Fprintf(stderr, "%d events under %s\n", len(evs), f.rules)
		return nil
	}

	d := replay.Diff(rp.Results[0].Events, rp.Results[1].Events, replay.DiffTolerance(rp.Header.Interval))
	for _, c := range d.Changes {
		if f.output == "json" {
			b := c.Event.JSON(rp.Start)
			fmt.Fprintf(out, `{"op":"%c",%s`+"\n", c.Op, b[1:])
		} else {
			fmt.Fprintln(out, c.Line(rp.Start))
		}
	}
	summary := d.Summary(f.rules, f.diff)
	if f.output == "json" {
		fmt.Fprintln(stderr, summary)
	} else {
		fmt.Fprintln(out, summary)
	}
	if !d.Same() {
		out.Flush()
		return &exitError{code: 1, err: errors.New("")}
	}
	return nil
}

// replayRules loads a ruleset path, or the built-in ruleset.
func replayRules(path string) (*rules.Set, error) {
	if path == ruletest.Builtin {
		path = ""
	}
	// Plugins are not checked: a replay runs no actions.
	set, err := loadRules(path, rules.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("rules %s:\n%w", path, err)
	}
	return set, nil
}

func writeTest(stdout io.Writer, warn func(string), f *replayFlags, set *rules.Set, file string) error {
	entry := ruletest.Builtin
	if f.rules != ruletest.Builtin && f.rules != "" {
		entry = relativeTo(filepath.Dir(f.toTest), f.rules)
	}
	r, err := record.Open(file, warn)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer r.Close()
	conv, err := replay.ToTest(r, r.Header(), replay.TestOptions{Path: f.toTest, Rules: entry, Set: set, Recording: file})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	for _, n := range conv.Notes {
		warn("the test cannot carry everything recorded: " + n)
	}
	if len(conv.Differences) > 0 {
		warn(fmt.Sprintf("the test emits other events than the replay of the recording (%d differences):", len(conv.Differences)))
		for _, d := range conv.Differences {
			warn("  " + d)
		}
	}
	if err := os.WriteFile(f.toTest, conv.YAML, 0o644); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("write test: %w", err)}
	}
	fmt.Fprintf(stdout, "%s: 1 test, %d ticks, %d nodes, %d events expected; run it with happen rules test %s\n",
		f.toTest, conv.Ticks, conv.Nodes, len(conv.Expected), f.toTest)
	return nil
}

// relativeTo is path as a test file in dir names it: relative to dir when
// it can be, else absolute.
func relativeTo(dir, path string) string {
	absDir, err1 := filepath.Abs(dir)
	absPath, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	if rel, err := filepath.Rel(absDir, absPath); err == nil {
		return filepath.ToSlash(rel)
	}
	return absPath
}
