package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/rules/internal/yamlx"
	"github.com/happen-dev/happen/sdk/events"
	"gopkg.in/yaml.v3"
)

// Parse decodes and compiles one ruleset file. data is the file's content;
// file names it in diagnostics. On any fault the error is Errors, holding
// every fault of the file in file order, and no ruleset is returned.
func Parse(file string, data []byte, opts LoadOptions) (*Ruleset, error) {
	return parse(file, data, opts, map[string]bool{})
}

// LoadFile reads and parses one ruleset file.
func LoadFile(path string, opts LoadOptions) (*Ruleset, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load ruleset: %w", err)
	}
	return Parse(path, data, opts)
}

// isRegular reports whether name is, or links to, a regular file. Stat
// follows symlinks (ConfigMap mounts are made of them); a pipe or a device
// in a rules folder is skipped, never read: the read would block, or never
// end.
func isRegular(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// LoadPaths loads every ruleset in paths into one Set. A path is a file or
// a folder; a folder means each *.yaml and *.yml file directly in it, in
// name order, hidden files and editor leftovers skipped. Faults of every
// file are reported together, as Errors.
func LoadPaths(paths []string, opts LoadOptions) (*Set, error) {
	if len(paths) == 0 {
		return nil, errors.New("load rulesets: no path given")
	}
	var files []string
	seen := map[string]bool{}
	var diags Errors
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load rulesets: %w", err)
		}
		names := []string{p}
		if !st.IsDir() && !st.Mode().IsRegular() {
			// A pipe or device would block the read, or never end.
			return nil, fmt.Errorf("load rulesets: %s is not a regular file", p)
		}
		if st.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("load rulesets: %w", err)
			}
			names = names[:0]
			for _, e := range entries {
				if e.IsDir() || !isRulesFile(e.Name()) {
					continue
				}
				name := filepath.Join(p, e.Name())
				if !isRegular(name) {
					continue
				}
				names = append(names, name)
			}
			if len(names) == 0 {
				diags = append(diags, Diagnostic{Pos: Position{File: p}, Msg: "no ruleset files (*.yaml or *.yml) in folder"})
			}
		}
		for _, n := range names {
			key, err := filepath.Abs(n)
			if err != nil {
				key = filepath.Clean(n)
			}
			if !seen[key] {
				seen[key] = true
				files = append(files, n)
			}
		}
	}
	warned := map[string]bool{}
	var sets []*Ruleset
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("load rulesets: %w", err)
		}
		rs, err := parse(f, data, opts, warned)
		var faults Errors
		if errors.As(err, &faults) {
			diags = append(diags, faults...)
			continue
		}
		if err != nil {
			return nil, err
		}
		sets = append(sets, rs)
	}
	set, err := NewSet(sets...)
	var faults Errors
	if errors.As(err, &faults) {
		diags = append(diags, faults...)
	}
	if len(diags) == 0 && len(set.Rules) == 0 {
		diags = append(diags, Diagnostic{Pos: Position{File: strings.Join(paths, ", ")}, Msg: "no rules"})
	}
	if len(diags) > 0 {
		return nil, diags
	}
	return set, nil
}

// NewSet merges rulesets into one Set: rules ordered by priority, highest
// first, ties in the order given (file, then position). A rule name may be
// used once across the whole set.
func NewSet(rulesets ...*Ruleset) (*Set, error) {
	s := &Set{}
	first := map[string]*Rule{}
	var diags Errors
	for _, rs := range rulesets {
		if rs == nil {
			continue
		}
		s.Files = append(s.Files, rs.File)
		for _, r := range rs.Rules {
			if prev, ok := first[r.Name]; ok {
				diags = append(diags, Diagnostic{Pos: r.namePosition(), Msg: fmt.Sprintf("duplicate rule name %q (first defined at %s)", r.Name, prev.namePosition())})
				continue
			}
			first[r.Name] = r
			s.Rules = append(s.Rules, r)
		}
	}
	if len(diags) > 0 {
		return nil, diags
	}
	sort.SliceStable(s.Rules, func(i, j int) bool { return s.Rules[i].Priority > s.Rules[j].Priority })
	return s, nil
}

func (r *Rule) namePosition() Position {
	if r.namePos.Line != 0 {
		return r.namePos
	}
	return r.Pos
}

var (
	reRuleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	rePattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	rePlugin   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	reVarName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// maxExpansion bounds the YAML nodes one file may make the loader visit
// through aliases, against alias bombs.
const maxExpansion = 100000

// decoder walks one file's yaml.Node tree, collecting every fault.
type decoder struct {
	file   string
	lines  []string
	opts   LoadOptions
	warned map[string]bool // plugins already warned about in this load
	diags  Errors
	// aliases follows aliases within maxExpansion nodes.
	aliases *yamlx.Aliases
	// bomb is set once aliases ran through the budget. What was decoded
	// is then incomplete, so it is the only fault reported.
	bomb *Diagnostic
}

func parse(file string, data []byte, opts LoadOptions, warned map[string]bool) (*Ruleset, error) {
	d := &decoder{
		file: file,
		// yaml.v3 counts columns after a byte order mark.
		lines:   yamlx.Lines(data),
		opts:    opts,
		warned:  warned,
		aliases: yamlx.NewAliases(maxExpansion),
	}
	root := d.document(data)
	var rs *Ruleset
	if root != nil {
		rs = d.ruleset(root)
	}
	if d.bomb != nil {
		return nil, Errors{*d.bomb}
	}
	if len(d.diags) > 0 {
		sort.SliceStable(d.diags, func(i, j int) bool {
			a, b := d.diags[i].Pos, d.diags[j].Pos
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, d.diags
	}
	return rs, nil
}

// document parses the YAML and returns its root node, or nil after
// recording why there is none.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a bad file must
		// be refused, never crash the engine.
		if r := recover(); r != nil {
			d.diags = append(d.diags, Diagnostic{Pos: Position{File: d.file, Line: 1, Col: 1}, Msg: fmt.Sprintf("yaml: malformed document: %v", r)})
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		d.diags = append(d.diags, Diagnostic{Pos: Position{File: d.file, Line: 1, Col: 1}, Msg: "empty file (want a ruleset with version, name and rules)"})
		return nil
	}
	if err != nil {
		d.diags = append(d.diags, syntaxDiagnostic(d.file, data, err, len(d.lines)))
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		d.errorf(at, "a ruleset file holds one YAML document, found a second")
	case !errors.Is(err, io.EOF):
		d.diags = append(d.diags, syntaxDiagnostic(d.file, data, err, len(d.lines)))
	}
	return doc.Content[0]
}

func (d *decoder) pos(n *yaml.Node) Position {
	line, col := yamlx.Pos(n)
	return Position{File: d.file, Line: line, Col: col}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{Pos: d.pos(n), Msg: fmt.Sprintf(format, args...)})
}

// deref follows aliases, spending budget so that an alias bomb fails
// instead of exhausting memory. It returns nil once the budget is spent.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	n, fault := d.aliases.Deref(n)
	switch {
	case fault == nil:
	case fault.Spent:
		d.bomb = &Diagnostic{Pos: d.pos(fault.Node), Msg: fault.Msg}
	default:
		d.diags = append(d.diags, Diagnostic{Pos: d.pos(fault.Node), Msg: fault.Msg})
	}
	return n
}

// field is one key and value of a mapping.
type field struct {
	key, val *yaml.Node
}

// fields checks that n is a mapping of known keys, each once, and returns
// them by name. what names the mapping in messages ("rule", "action").
func (d *decoder) fields(n *yaml.Node, what string, known ...string) (map[string]field, bool) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, got %s", what, yamlx.Describe(n))
		return nil, false
	}
	out := map[string]field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.deref(n.Content[i])
		v := d.deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "field name in %s must be a string, got %s", what, yamlx.Describe(k))
			continue
		}
		name := k.Value
		switch {
		case name == "<<" && k.Tag == "!!merge":
			d.errorf(k, "merge keys (<<) are not supported in %s", what)
		case !contains(known, name):
			d.errorf(k, "unknown field %q in %s", name, what)
		case out[name].key != nil:
			d.errorf(k, "duplicate field %q in %s", name, what)
		default:
			out[name] = field{k, v}
		}
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str returns a scalar's text. Numbers and booleans are accepted as
// written, so pattern: 404 is the string "404".
func (d *decoder) str(f field) (string, bool) {
	v := f.val
	if v.Kind != yaml.ScalarNode {
		d.errorf(v, "%s must be a string, got %s", f.key.Value, yamlx.Describe(v))
		return "", false
	}
	if v.Tag == "!!null" || v.Value == "" {
		d.errorf(v, "%s is empty", f.key.Value)
		return "", false
	}
	return v.Value, true
}

func (d *decoder) integer(f field) (int, bool) {
	v := f.val
	var i int
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&i) != nil {
		d.errorf(v, "%s must be an integer, got %s", f.key.Value, yamlx.Describe(v))
		return 0, false
	}
	return i, true
}

func (d *decoder) boolean(f field) (bool, bool) {
	v := f.val
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		d.errorf(v, "%s must be true or false, got %s", f.key.Value, yamlx.Describe(v))
		return false, false
	}
	return b, true
}

// duration reads a Go duration such as 3s or 1m; positive demands > 0,
// else >= 0 holds.
func (d *decoder) duration(f field, positive bool) (time.Duration, bool) {
	v := f.val
	name := f.key.Value
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		d.errorf(v, "%s must be a duration such as 3s or 1m, got %s", name, yamlx.Describe(v))
		return 0, false
	}
	dur, err := time.ParseDuration(v.Value)
	switch {
	case err != nil:
		d.errorf(v, "invalid %s duration %q (want e.g. 3s or 1m)", name, v.Value)
		return 0, false
	case dur < 0:
		d.errorf(v, "%s must not be negative, got %q", name, v.Value)
		return 0, false
	case positive && dur == 0:
		d.errorf(v, "%s must be positive, got %q", name, v.Value)
		return 0, false
	}
	return dur, true
}

func (d *decoder) ruleset(root *yaml.Node) *Ruleset {
	root = d.deref(root)
	if root == nil {
		return nil
	}
	fs, ok := d.fields(root, "ruleset", "version", "name", "description", "vars", "rules")
	if !ok {
		return nil
	}
	rs := &Ruleset{File: d.file, Vars: map[string]any{}}
	if f, ok := fs["version"]; !ok {
		d.errorf(root, "missing field \"version\" (want version: 1)")
	} else if v, ok := d.integer(f); ok {
		if v != 1 {
			d.errorf(f.val, "unsupported version %d (want 1)", v)
		}
		rs.Version = v
	}
	if f, ok := fs["name"]; !ok {
		d.errorf(root, "missing field \"name\" in ruleset")
	} else if s, ok := d.str(f); ok {
		rs.Name = s
	}
	if f, ok := fs["description"]; ok && f.val.Kind != yaml.ScalarNode {
		d.errorf(f.val, "description must be a string, got %s", yamlx.Describe(f.val))
	}
	if f, ok := fs["vars"]; ok {
		d.vars(f.val, rs.Vars)
	}
	f, ok := fs["rules"]
	if !ok {
		d.errorf(root, "missing field \"rules\" in ruleset")
		return rs
	}
	if f.val.Kind == yaml.ScalarNode && f.val.Tag == "!!null" {
		return rs
	}
	if f.val.Kind != yaml.SequenceNode {
		d.errorf(f.val, "rules must be a list, got %s", yamlx.Describe(f.val))
		return rs
	}
	names := map[string]*Rule{}
	for _, item := range f.val.Content {
		item = d.deref(item)
		if item == nil {
			continue
		}
		r := d.rule(item, rs.Vars)
		if r == nil {
			continue
		}
		if prev, ok := names[r.Name]; ok {
			d.diags = append(d.diags, Diagnostic{Pos: r.namePos, Msg: fmt.Sprintf("duplicate rule name %q (first defined at %s)", r.Name, prev.namePos)})
			continue
		}
		names[r.Name] = r
		rs.Rules = append(rs.Rules, r)
	}
	return rs
}

func (d *decoder) vars(n *yaml.Node, out map[string]any) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "vars must be a mapping, got %s", yamlx.Describe(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), d.deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode || !reVarName.MatchString(k.Value) {
			d.errorf(k, "invalid var name %s (want a letter or _, then letters, digits or _)", yamlx.Describe(k))
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.errorf(k, "duplicate var %q", k.Value)
			continue
		}
		var val any
		ok := v.Kind == yaml.ScalarNode
		if ok {
			switch v.Tag {
			case "!!int":
				var i int
				ok = v.Decode(&i) == nil
				val = i
			case "!!float":
				var f float64
				ok = v.Decode(&f) == nil
				val = f
			case "!!bool":
				var b bool
				ok = v.Decode(&b) == nil
				val = b
			case "!!str":
				val = v.Value
			default:
				ok = false
			}
		}
		if !ok {
			d.errorf(v, "var %q must be a number, string or boolean, got %s", k.Value, yamlx.Describe(v))
			continue
		}
		out[k.Value] = val
	}
}

var ruleFields = []string{
	"name", "description", "scope", "when", "resolve", "for", "keepFiringFor", "cooldown",
	"emit", "pattern", "level", "priority", "actions",
}

// rule decodes one item of rules. It returns nil when the rule has no
// usable name; other faults are recorded and the rule still returned, so
// duplicate names are found too.
func (d *decoder) rule(n *yaml.Node, vars map[string]any) *Rule {
	fs, ok := d.fields(n, "rule", ruleFields...)
	if !ok {
		return nil
	}
	r := &Rule{Pos: d.pos(n), Scope: ScopeNode, Level: events.LevelWarning}
	label := "rule"
	f, ok := fs["name"]
	if !ok {
		d.errorf(n, "missing field \"name\" in rule")
	} else if s, ok := d.str(f); ok {
		if reRuleName.MatchString(s) {
			r.Name = s
			r.namePos = d.pos(f.val)
			label = fmt.Sprintf("rule %q", s)
		} else {
			d.errorf(f.val, "invalid rule name %q (want letters, digits, _, . and -, starting with a letter or digit)", s)
		}
	}
	if f, ok := fs["description"]; ok && f.val.Kind != yaml.ScalarNode {
		d.errorf(f.val, "description must be a string, got %s", yamlx.Describe(f.val))
	}
	scopeOK := true
	if f, ok := fs["scope"]; ok {
		s, ok := d.str(f)
		switch Scope(s) {
		case ScopeNode, ScopeGroup, ScopeSystem:
			r.Scope = Scope(s)
		default:
			if ok {
				d.errorf(f.val, "unknown scope %q (want node, group or system)", s)
			}
			scopeOK = false
		}
	}
	var whenExpr, resolveExpr compiledExpr
	if f, ok := fs["when"]; !ok {
		d.errorf(n, "missing field \"when\" in %s", label)
	} else if scopeOK {
		r.When, whenExpr = d.expr(f, r.Scope, vars)
	}
	if f, ok := fs["resolve"]; ok && scopeOK {
		r.Resolve, resolveExpr = d.expr(f, r.Scope, vars)
	}
	for _, k := range []struct {
		name string
		dst  *time.Duration
	}{{"for", &r.For}, {"keepFiringFor", &r.KeepFiringFor}, {"cooldown", &r.Cooldown}} {
		if f, ok := fs[k.name]; ok {
			*k.dst, _ = d.duration(f, false)
		}
	}
	r.Emit = events.TypeNodeDown
	if r.Scope == ScopeSystem {
		r.Emit = events.TypeSystemDown
	}
	if f, ok := fs["emit"]; ok {
		if s, ok := d.str(f); ok {
			switch {
			case s != events.TypeNodeDown && s != events.TypeSystemDown:
				d.errorf(f.val, "unknown emit %q (want %s or %s)", s, events.TypeNodeDown, events.TypeSystemDown)
			case s == events.TypeNodeDown && r.Scope == ScopeSystem:
				d.errorf(f.val, "a system rule cannot emit %s (want %s)", s, events.TypeSystemDown)
			default:
				r.Emit = s
			}
		}
	}
	if f, ok := fs["pattern"]; !ok {
		d.errorf(n, "missing field \"pattern\" in %s", label)
	} else if s, ok := d.str(f); ok {
		if rePattern.MatchString(s) {
			r.Pattern = s
		} else {
			d.errorf(f.val, "invalid pattern %q (want lowercase letters, digits and -, starting with a letter or digit)", s)
		}
	}
	if f, ok := fs["level"]; ok {
		if s, ok := d.str(f); ok {
			if s == events.LevelWarning || s == events.LevelCritical {
				r.Level = s
			} else {
				d.errorf(f.val, "unknown level %q (want %s or %s)", s, events.LevelWarning, events.LevelCritical)
			}
		}
	}
	if f, ok := fs["priority"]; ok {
		r.Priority, _ = d.integer(f)
	}
	if f, ok := fs["actions"]; ok {
		r.Actions = d.actions(f.val)
	}
	if r.Name == "" {
		return nil
	}
	r.when, r.resolve = whenExpr.prog, resolveExpr.prog
	r.Fingerprint = fingerprint(r, vars, whenExpr.vars, resolveExpr.vars)
	return r
}

// expr compiles a when or resolve expression, reporting faults at their
// place in the file.
func (d *decoder) expr(f field, scope Scope, vars map[string]any) (string, compiledExpr) {
	v := f.val
	name := f.key.Value
	if v.Kind != yaml.ScalarNode {
		d.errorf(v, "%s must be an expression, got %s", name, yamlx.Describe(v))
		return "", compiledExpr{}
	}
	if v.Tag == "!!null" {
		d.errorf(v, "%s is empty", name)
		return "", compiledExpr{}
	}
	ce, fault := compileExpr(scope, v.Value, vars)
	if fault != nil {
		at := srcPos{v.Line, v.Column}
		if fault.off >= 0 {
			at = mapScalar(d.lines, v).at(fault.off)
		}
		d.diags = append(d.diags, Diagnostic{
			Pos: Position{File: d.file, Line: max(at.line, 1), Col: max(at.col, 1)},
			Msg: name + ": " + fault.msg,
		})
	}
	return v.Value, ce
}

func (d *decoder) actions(n *yaml.Node) []Action {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "actions must be a list, got %s", yamlx.Describe(n))
		return nil
	}
	var out []Action
	for _, item := range n.Content {
		item = d.deref(item)
		if item == nil {
			continue
		}
		if a, ok := d.action(item); ok {
			out = append(out, a)
		}
	}
	return out
}

func (d *decoder) action(n *yaml.Node) (Action, bool) {
	a := Action{Pos: d.pos(n)}
	fs, ok := d.fields(n, "action", "plugin", "with", "timeout", "optional")
	if !ok {
		return a, false
	}
	if f, ok := fs["timeout"]; ok {
		a.Timeout, _ = d.duration(f, true)
	}
	if f, ok := fs["optional"]; ok {
		a.Optional, _ = d.boolean(f)
	}
	var withKeys []*yaml.Node
	if f, ok := fs["with"]; ok {
		a.With, withKeys = d.with(f.val)
	}
	f, ok := fs["plugin"]
	if !ok {
		d.errorf(n, "missing field \"plugin\" in action")
		return a, false
	}
	name, ok := d.str(f)
	if !ok {
		return a, false
	}
	if !rePlugin.MatchString(name) {
		d.errorf(f.val, "invalid plugin name %q (want lowercase letters, digits, - and _)", name)
		return a, false
	}
	a.Plugin = name
	if d.opts.Plugins == nil {
		return a, true
	}
	params, installed := d.opts.Plugins.Params(name)
	switch {
	case !installed && !a.Optional:
		d.errorf(f.val, "plugin %q is not installed", name)
	case !installed:
		if !d.warned[name] {
			d.warned[name] = true
			if d.opts.Warn != nil {
				d.opts.Warn(Diagnostic{Pos: d.pos(f.val), Msg: fmt.Sprintf("plugin %q is not installed; optional action skipped", name)})
			}
		}
	case params != nil:
		for _, k := range withKeys {
			if !contains(params, k.Value) {
				d.errorf(k, "plugin %q has no parameter %q (it takes %s)", name, k.Value, strings.Join(params, ", "))
			}
		}
	}
	return a, true
}

// with decodes an action's parameters into plain Go values. Strings stay
// as written: ${env:..} and ${file:..} are expanded only when the action
// runs. It also returns the key nodes, for checking them by position.
func (d *decoder) with(n *yaml.Node) (map[string]any, []*yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "with must be a mapping, got %s", yamlx.Describe(n))
		return nil, nil
	}
	out := map[string]any{}
	var keys []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), d.deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "parameter name must be a string, got %s", yamlx.Describe(k))
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.errorf(k, "duplicate parameter %q", k.Value)
			continue
		}
		val, ok := d.plain(v)
		if !ok {
			continue
		}
		out[k.Value] = val
		keys = append(keys, k)
	}
	return out, keys
}

// plain converts a YAML value to string, int, float64, bool, nil, []any or
// map[string]any.
func (d *decoder) plain(n *yaml.Node) (any, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, true
			}
		case "!!int":
			var i int
			if n.Decode(&i) == nil {
				return i, true
			}
			var f float64
			if n.Decode(&f) == nil && !math.IsInf(f, 0) {
				return f, true // too large for int
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f, true
			}
		default:
			// Strings, and timestamps or binary kept as written.
			return n.Value, true
		}
		d.errorf(n, "invalid value %s", yamlx.Describe(n))
		return nil, false
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for _, c := range n.Content {
			c = d.deref(c)
			if c == nil {
				return nil, false
			}
			v, vok := d.plain(c)
			ok = ok && vok
			out = append(out, v)
		}
		return out, ok
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := d.deref(n.Content[i]), d.deref(n.Content[i+1])
			if k == nil || v == nil {
				return nil, false
			}
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, "mapping key must be a string, got %s", yamlx.Describe(k))
				ok = false
				continue
			}
			if _, dup := out[k.Value]; dup {
				d.errorf(k, "duplicate key %q", k.Value)
				ok = false
				continue
			}
			val, vok := d.plain(v)
			ok = ok && vok
			out[k.Value] = val
		}
		return out, ok
	}
	d.errorf(n, "invalid value %s", yamlx.Describe(n))
	return nil, false
}

// fingerprint hashes everything about a rule that affects what it does, so
// an unchanged rule keeps its alert state across a reload and any change
// starts it afresh. Descriptions are left out: they change nothing.
func fingerprint(r *Rule, vars map[string]any, used ...[]string) string {
	var b strings.Builder
	kv := func(k string, v any) {
		b.WriteString(k)
		b.WriteByte('=')
		canonical(&b, v)
		b.WriteByte('\n')
	}
	kv("name", r.Name)
	kv("scope", string(r.Scope))
	kv("when", r.When)
	kv("resolve", r.Resolve)
	names := map[string]bool{}
	for _, u := range used {
		for _, n := range u {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		kv("var."+n, vars[n])
	}
	kv("for", int(r.For))
	kv("keepFiringFor", int(r.KeepFiringFor))
	kv("cooldown", int(r.Cooldown))
	kv("emit", r.Emit)
	kv("pattern", r.Pattern)
	kv("level", r.Level)
	kv("priority", r.Priority)
	for _, a := range r.Actions {
		kv("action.plugin", a.Plugin)
		kv("action.with", a.With)
		kv("action.timeout", int(a.Timeout))
		kv("action.optional", a.Optional)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// canonical writes v so that equal values give equal text and values of
// different types never do: typed, quoted, map keys sorted.
func canonical(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(strconv.Quote(v))
	case int:
		b.WriteString("i" + strconv.Itoa(v))
	case float64:
		b.WriteString("f" + strconv.FormatFloat(v, 'g', -1, 64))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			canonical(b, x)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			canonical(b, v[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprintf(b, "%T:%v", v, v)
	}
}
