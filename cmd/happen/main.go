// Command happen is the Flow Balance engine for NATS JetStream: it watches
// the flow of messages, tells node failures, partitions, bottlenecks and
// overload apart, publishes events about them and runs recovery actions.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "happen:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "happen",
		Short: "Flow Balance for NATS JetStream: detect and act on node failure, partition, bottleneck and overload",
		Example: `  happen engine                      # run on an embedded NATS server
  happen demo                        # see every pattern detected live, in under 3 minutes
  happen status -s nats://127.0.0.1:4222
  happen events --type 'node.*'
  source <(happen completion bash)   # shell completion (also zsh, fish, powershell)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newEngineCmd(), newRulesCmd(), newStatusCmd(), newEventsCmd(), newDemoCmd(), newReplayCmd(), newVersionCmd())
	registerCompletions(root) // after every command is added
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print version, commit and Go version",
		Example: "  happen version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := commit
			if c == "" {
				c = vcsRevision()
			}
			if c == "" {
				c = "unknown"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "happen %s\ncommit %s\n%s %s/%s\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func vcsRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}

// bindEnv gives every flag not set on the command line the value of
// HAPPEN_<NAME> (upper case, dashes as underscores) when that is set.
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "HAPPEN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}
