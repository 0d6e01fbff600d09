package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion comes from cobra's own `completion` command; this adds
// what it cannot guess: which flags take files, folders or a fixed set of
// words. Flags are matched by name across every command, so a flag added
// later to any command completes the same way as its namesakes.
var (
	// flagWords are the fixed values of enumerated flags.
	flagWords = map[string][]string{
		"log-level":  {"debug", "info", "warn", "error"},
		"log-format": {"text", "json"},
		"output":     {"text", "json"},
		"color":      {"auto", "always", "never"},
	}
	// flagFiles take a file; the extensions filter the candidates (none: any).
	flagFiles = map[string][]string{
		"rules":        {"yaml", "yml"}, // a file or, as the directive allows, a folder
		"diff":         {"yaml", "yml"},
		"creds":        {"creds"},
		"system-creds": {"creds"},
		"nkey":         {"nk", "seed"},
		"tls-cert":     {"pem", "crt"},
		"tls-key":      {"pem", "key"},
		"tls-ca":       {"pem", "crt"},
		"record":       nil,
		"to-test":      {"yaml", "yml"},
	}
	// flagDirs take a folder.
	flagDirs = map[string]bool{"data": true, "plugins": true}
)

// registerCompletions walks the command tree under root and registers a
// completion function for every flag named above.
func registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			var fn cobra.CompletionFunc
			if words, ok := flagWords[f.Name]; ok {
				fn = cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp)
			} else if exts, ok := flagFiles[f.Name]; ok {
				fn = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
					if len(exts) == 0 {
						return nil, cobra.ShellCompDirectiveDefault
					}
					return exts, cobra.ShellCompDirectiveFilterFileExt
				}
			} else if flagDirs[f.Name] {
				fn = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
					return nil, cobra.ShellCompDirectiveFilterDirs
				}
			}
			if fn != nil {
				// An error means it is registered already; the first one stands.
				_ = c.RegisterFlagCompletionFunc(f.Name, fn)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// yamlArgs completes positional arguments with ruleset and test files (and
// folders, which the shells offer for descending).
func yamlArgs(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}
