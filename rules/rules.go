// Package rules loads happen rulesets and evaluates them against flow
// metrics.
//
// Loading is apart from evaluation: the loader decodes YAML strictly, keeps
// every node's position, compiles each expression once against the typed
// environment of its scope and reports every fault at once as file:line:col
// diagnostics. The Evaluator is the alert state machine (inactive, pending,
// firing, resolved) driven by the evaluation time it is given, so it is tested
// without clocks.
package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/happen-dev/happen/rules/snapshot"
)

// Scope says what a rule is evaluated for.
type Scope string

const (
	ScopeNode   Scope = "node"   // once per node; env: node, group, system
	ScopeGroup  Scope = "group"  // once per named group; env: group, system
	ScopeSystem Scope = "system" // once per tick; env: system
)

// NodeEnv is the environment of a node-scope rule.
type NodeEnv struct {
	Node   *snapshot.Node   `expr:"node"`
	Group  *snapshot.Group  `expr:"group"`
	System *snapshot.System `expr:"system"`
}

// GroupEnv is the environment of a group-scope rule.
type GroupEnv struct {
	Group  *snapshot.Group  `expr:"group"`
	System *snapshot.System `expr:"system"`
}

// SystemEnv is the environment of a system-scope rule.
type SystemEnv struct {
	System *snapshot.System `expr:"system"`
}

// Position is a place in a ruleset file, 1-based.
type Position struct {
	File string
	Line int
	Col  int
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Diagnostic is one fault found while loading.
type Diagnostic struct {
	Pos Position
	Msg string
}

func (d Diagnostic) Error() string { return d.Pos.String() + ": " + d.Msg }

// Errors is every fault of a refused load, in file order.
type Errors []Diagnostic

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, d := range e {
		lines[i] = d.Error()
	}
	return strings.Join(lines, "\n")
}

// Action is one item of a rule's actions list.
type Action struct {
	Plugin   string
	With     map[string]any // as written; ${env:..} and ${file:..} are expanded only when run
	Timeout  time.Duration  // 0: the dispatcher's default
	Optional bool
	Pos      Position
}

// Rule is one compiled rule.
type Rule struct {
	Name          string
	Scope         Scope
	When          string // expression source
	Resolve       string // optional expression source
	For           time.Duration
	KeepFiringFor time.Duration
	Cooldown      time.Duration
	Emit          string // events.TypeNodeDown or events.TypeSystemDown
	Pattern       string
	Level         string // events.LevelWarning or events.LevelCritical
	// Priority orders rules that claim the same node: a node carries at most
	// one active down, the one of the highest priority (ties: load order).
	Priority int
	Actions  []Action
	Pos      Position // of the rule's mapping in its file

	// Fingerprint is equal for two loads of an unchanged rule, so a reload
	// carries their alert state over.
	Fingerprint string

	when    *vm.Program
	resolve *vm.Program // nil when Resolve is empty
	namePos Position    // of the name's value, for duplicate-name diagnostics
}

// Ruleset is one file.
type Ruleset struct {
	Version int
	Name    string
	File    string
	Vars    map[string]any
	Rules   []*Rule
}

// Set is every ruleset in force, its rules ordered by priority (highest
// first), then by file and position.
type Set struct {
	Files []string
	Rules []*Rule
}

// PluginCatalog tells the loader which plugins are installed and which
// `with` parameters each accepts. A nil catalog checks nothing.
type PluginCatalog interface {
	// Params returns the parameters the plugin accepts, and false when the
	// plugin is not installed. A nil slice with true accepts any parameter.
	Params(plugin string) (params []string, installed bool)
}

// LoadOptions are shared by every loader entry point.
type LoadOptions struct {
	Plugins PluginCatalog
	// Warn receives non-fatal findings, such as an optional action whose
	// plugin is absent. May be nil.
	Warn func(Diagnostic)
}

// Match runs the rule's when expression. env must be the env type of the
// rule's scope (*NodeEnv, *GroupEnv or *SystemEnv). m may be reused between
// calls from one goroutine.
func (r *Rule) Match(m *vm.VM, env any) (bool, error) {
	return run(m, r.when, env)
}

// Cleared reports whether a firing alert's condition has cleared: the
// resolve expression when the rule has one, else when no longer holding.
func (r *Rule) Cleared(m *vm.VM, env any, when bool) (bool, error) {
	if r.resolve == nil {
		return !when, nil
	}
	return run(m, r.resolve, env)
}

func run(m *vm.VM, p *vm.Program, env any) (bool, error) {
	out, err := m.Run(p, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression returned %T, not bool", out)
	}
	return b, nil
}
