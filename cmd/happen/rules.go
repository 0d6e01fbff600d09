package main

import (
	"errors"
	"fmt"

	"github.com/happen-dev/happen/rules"
	"github.com/spf13/cobra"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Work with rulesets"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check PATH...",
		Short: "Validate ruleset files or folders; exit 1 with file:line:col for each fault",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			opts := rules.LoadOptions{Warn: func(d rules.Diagnostic) { fmt.Fprintf(errOut, "%s: warning: %s\n", d.Pos, d.Msg) }}
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
	})
	return cmd
}
