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
	"github.com/spf13/cobra"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Work with rulesets"}
	var pluginDir string
	check := &cobra.Command{
		Use:   "check PATH...",
		Short: "Validate ruleset files or folders; exit 1 with file:line:col for each fault",
		Long: `Validate ruleset files or folders, as the engine would load them: YAML,
fields, expressions, and every action against the plugins installed in
--plugins. Each fault is printed as file:line:col: message; the exit code
is 1 when there is any.`,
		Args: cobra.MinimumNArgs(1),
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
	cmd.AddCommand(check)
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
