// Package rulesets embeds the built-in ruleset, so the happen binary works
// from any folder with no rules of its own.
package rulesets

import _ "embed"

// DefaultName is the file name the built-in ruleset reports in diagnostics.
const DefaultName = "rulesets/default.yaml"

// Default is the source of rulesets/default.yaml.
//
//go:embed default.yaml
var Default []byte
