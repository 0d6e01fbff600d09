package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/happen-dev/happen/engine/plugins"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/rules/ruletest"
	"github.com/spf13/cobra"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Work with rulesets: check them, and run their unit tests",
		Example: `  happen rules check rulesets/default.yaml ./my-rules/
  happen rules test rulesets/tests/`,
	}
	var pluginDir string
	check := &cobra.Command{
		Use:   "check PATH...",
		Short: "Validate ruleset files or folders; exit 1 with file:line:col for each fault",
		Long: `Validate ruleset files or folders, as the engine would load them: YAML,
fields, expressions, and every action against the plugins installed in
--plugins. Each fault is printed as file:line:col: message; the exit code
is 1 when there is any.`,
		Example: `  happen rules check rulesets/default.yaml
  happen rules check ./my-rules/ --plugins ./bin

  # A fault is reported where it is:
  # my-rules/orders.yaml:6:16: when: unknown metric node.lagg`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: yamlArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return &exitError{code: 2, err: err}
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			// Plugins are started only to describe themselves; they get no
			// NATS connection here.
			mgr, err := plugins.New(plugins.Config{Dir: pluginDir, Host: offlineHost{}, DryRun: true,
				Logger: slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if err := mgr.Start(ctx); err != nil {
				return &exitError{code: 2, err: err}
			}
			defer mgr.Close(ctx)
			opts := rules.LoadOptions{Plugins: mgr, Warn: func(d rules.Diagnostic) { fmt.Fprintf(errOut, "%s: warning: %s\n", d.Pos, d.Msg) }}
			failed := false
			for _, p := range args {
				set, err := rules.LoadPaths([]string{p}, opts)
				if err != nil {
					failed = true
					var diags rules.Errors
					if errors.As(err, &diags) {
						for _, d := range diags {
							fmt.Fprintln(errOut, d.Error())
						}
					} else {
						fmt.Fprintln(errOut, err)
					}
					continue
				}
				fmt.Fprintf(out, "%s: ok (%d rules in %d files)\n", p, len(set.Rules), len(set.Files))
			}
			if failed {
				return &exitError{code: 1, err: errors.New("")}
			}
			return nil
		},
	}
	check.Flags().StringVar(&pluginDir, "plugins", defaultPluginDir(), "folder of happen-plugin-* executables to check actions against")
	cmd.AddCommand(check, newRulesTestCmd())
	return cmd
}

func newRulesTestCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test FILE...",
		Short: "Run rule unit tests (sampled flow in, expected events out); exit 1 on a failure",
		Long: `Run rule unit tests, as promtool test rules does for Prometheus. Each test
file names rulesets and gives, per node, sampled JetStream state over time in
promtool's series notation; the tests run it through the engine's own flow
tracker and rule evaluator and compare the events emitted with the events
expected. A folder stands for every *.yaml and *.yml file directly in it.

One line is printed per test: ok, or FAIL followed by what was expected and
not emitted, what was emitted and not expected, and everything emitted.
A malformed test file is reported as file:line:col: message. The exit code
is 1 when any test fails or any file is malformed.`,
		Example: `  happen rules test rulesets/tests/

  # node-failure.yaml
  rules: [builtin]          # or ruleset files and folders, relative to this file
  interval: 1s
  tests:
    - name: a node stops acking while its work keeps arriving
      streams:
        ORDERS: 0+20x40     # the stream's last sequence at each tick
      nodes:
        eu-1:               # crashes at 16s: nothing pulled, work piles up
          group: eu
          delivered:    0+20x15 300x24
          pending:      0x15 20+20x24
          waitingPulls: 1x15 0x24
        eu-2: {group: eu, delivered: 0+20x40}   # acks all it gets
        us-1: {group: us, delivered: 0+20x40}
      expect:
        - {at: 16s..25s, type: node.down, node: eu-1, pattern: node-failure, incident: a}`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: yamlArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			files, err := ruletest.Paths(args)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			failed, broken, passed := 0, 0, 0
			for _, path := range files {
				f, err := ruletest.Load(path)
				if err != nil {
					broken++
					for _, line := range ruletest.Diagnostics(err) {
						fmt.Fprintln(errOut, line)
					}
					continue
				}
				for _, r := range f.Run() {
					if r.Passed() {
						passed++
						fmt.Fprintf(out, "ok   %s: %s (%d events)\n", r.Test.Pos, r.Test.Name, len(r.Events))
						if verbose {
							fmt.Fprint(out, r.Timeline())
						}
						continue
					}
					failed++
					fmt.Fprintf(out, "FAIL %s: %s\n%s", r.Test.Pos, r.Test.Name, r.Report())
				}
			}
			if failed > 0 || broken > 0 {
				return &exitError{code: 1, err: fmt.Errorf("rules test: %d passed, %d failed, %d files malformed", passed, failed, broken)}
			}
			fmt.Fprintf(out, "%d tests passed\n", passed)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print what every test emitted, passing ones too")
	return cmd
}

// offlineHost is the host lent to plugins while rules are only checked:
// there is no NATS connection to act through.
type offlineHost struct{}

var errOffline = errors.New("rules check runs no actions and has no NATS connection")

func (offlineHost) Publish(context.Context, string, []byte) error { return errOffline }
func (offlineHost) KVGet(context.Context, string, string) ([]byte, bool, error) {
	return nil, false, errOffline
}
func (offlineHost) KVPut(context.Context, string, string, []byte) error { return errOffline }
func (offlineHost) KVDelete(context.Context, string, string) error      { return errOffline }
func (offlineHost) ConsumerConfig(context.Context, string, string) (json.RawMessage, error) {
	return nil, errOffline
}
func (offlineHost) UpdateConsumer(context.Context, string, string, map[string]any) error {
	return errOffline
}
