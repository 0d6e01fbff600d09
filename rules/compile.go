package rules

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Limits that keep a hostile or careless expression from hurting the
// engine. Every rule runs once per node per tick, so what an expression may
// do is bounded when it is loaded: its size here, and at run time by the
// VM's memory budget. Loops (closures such as map or filter), let
// bindings, ranges used as lists and builtins whose output can outgrow their
// input (repeat, replace, join, toJSON, ...) are refused: without them an
// expression's work is linear in its size, which these limits cap.
const (
	maxExprBytes = 4096 // source, and again for the string vars it uses
	maxExprNodes = 1000 // AST nodes
)

// exprBuiltins are the builtins a rule may call: arithmetic and string
// tests whose cost and output stay within a small factor of their input.
// Builtins that read the clock (now, date) are left out too: a rule
// decides from the metrics it is given, so it can be tested without clocks.
var exprBuiltins = []string{
	"len", "abs", "ceil", "floor", "round", "int", "float", "string",
	"trim", "trimPrefix", "trimSuffix", "upper", "lower",
	"indexOf", "lastIndexOf", "hasPrefix", "hasSuffix",
	"max", "min", "mean", "median", "first", "last", "get", "type",
}

// exprFault is a compile error at a rune offset of the expression source;
// off < 0 means the expression as a whole.
type exprFault struct {
	off int
	msg string
}

// compiledExpr is a compiled when or resolve expression.
type compiledExpr struct {
	prog *vm.Program
	vars []string // the vars it uses, sorted
}

// compileExpr compiles src for a rule of the given scope. vars.NAME is
// replaced by the var's value before type checking, so it checks as the
// number, string or bool it is.
func compileExpr(scope Scope, src string, vars map[string]any) (ce compiledExpr, fault *exprFault) {
	if len(src) > maxExprBytes {
		return ce, &exprFault{off: -1, msg: fmt.Sprintf("expression is too long (%d bytes, limit %d)", len(src), maxExprBytes)}
	}
	if strings.TrimSpace(src) == "" {
		return ce, &exprFault{off: -1, msg: "expression is empty"}
	}
	var env any
	switch scope {
	case ScopeNode:
		env = NodeEnv{}
	case ScopeGroup:
		env = GroupEnv{}
	case ScopeSystem:
		env = SystemEnv{}
	default:
		return ce, &exprFault{off: -1, msg: fmt.Sprintf("unknown scope %q", scope)}
	}
	p := &exprPatcher{vars: vars, used: map[string]bool{}}
	opts := []expr.Option{
		expr.Env(env),
		expr.AsBool(),
		expr.MaxNodes(maxExprNodes),
		expr.DisableAllBuiltins(),
		expr.Patch(p),
	}
	for _, b := range exprBuiltins {
		opts = append(opts, expr.EnableBuiltin(b))
	}
	prog, err := safeCompile(src, opts)
	p.checkRanges()
	if p.fault != nil {
		// The patcher runs before type checking: what it refused explains
		// any type error that follows from it.
		return ce, p.fault
	}
	if err != nil {
		return ce, exprError(scope, err)
	}
	if p.strBytes > maxExprBytes {
		return ce, &exprFault{off: -1, msg: fmt.Sprintf("expression is too long with its string vars substituted (%d bytes, limit %d)", p.strBytes, maxExprBytes)}
	}
	ce.prog = prog
	for name := range p.used {
		ce.vars = append(ce.vars, name)
	}
	sort.Strings(ce.vars)
	return ce, nil
}

// safeCompile turns a panic inside the compiler into an error, so no
// input can take the loader down.
func safeCompile(src string, opts []expr.Option) (prog *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			prog, err = nil, fmt.Errorf("expression could not be compiled: %v", r)
		}
	}()
	return expr.Compile(src, opts...)
}

var (
	reNoField   = regexp.MustCompile(`^type \*?snapshot\.(Node|Group|System) has no field (.+)$`)
	reNotBool   = regexp.MustCompile(`^expected bool, but got (.+)$`)
	reUnknownID = regexp.MustCompile(`^unknown name (node|group)$`)
)

// exprError turns an expr compile error into a fault with an offset, in
// the words of rule authors: metrics rather than Go types.
func exprError(scope Scope, err error) *exprFault {
	f := &exprFault{off: -1}
	f.msg, _, _ = strings.Cut(err.Error(), "\n")
	var fe *file.Error
	if errors.As(err, &fe) {
		f.msg = fe.Message
		if fe.Snippet != "" {
			// Bound to the source; otherwise the error is about the
			// whole expression.
			f.off = fe.From
		}
	}
	switch m := f.msg; {
	case reNoField.MatchString(m):
		s := reNoField.FindStringSubmatch(m)
		f.msg = fmt.Sprintf("unknown metric %s.%s", strings.ToLower(s[1]), s[2])
	case reNotBool.MatchString(m):
		f.msg = fmt.Sprintf("expression must be boolean, not %s", reNotBool.FindStringSubmatch(m)[1])
	case reUnknownID.MatchString(m):
		what := reUnknownID.FindStringSubmatch(m)[1]
		sees := "group and system"
		if scope == ScopeSystem {
			sees = "system"
		}
		f.msg = fmt.Sprintf("%s is not available in a %s rule (it sees %s)", what, scope, sees)
	case strings.Contains(m, "exceeds maximum allowed nodes"):
		f.off = -1
		f.msg = fmt.Sprintf("expression is too complex (more than %d nodes)", maxExprNodes)
	}
	return f
}

// exprPatcher substitutes vars and refuses the constructs rules may not
// use. It keeps the first fault in source order.
type exprPatcher struct {
	vars     map[string]any
	used     map[string]bool
	strBytes int // length of the string vars substituted
	fault    *exprFault

	ranges   []*ast.BinaryNode        // every a..b
	inRanges map[*ast.BinaryNode]bool // those that are the right of an in
}

func (p *exprPatcher) fail(at ast.Node, format string, args ...any) {
	off := at.Location().From
	if p.fault == nil || off < p.fault.off {
		p.fault = &exprFault{off: off, msg: fmt.Sprintf(format, args...)}
	}
}

func (p *exprPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "vars" {
			return
		}
		name, ok := n.Property.(*ast.StringNode)
		if !ok {
			p.fail(id, "vars must be followed by a var name, as in vars.NAME")
			return
		}
		v, ok := p.vars[name.Value]
		if !ok {
			p.fail(id, "unknown var %q", name.Value)
			return
		}
		p.used[name.Value] = true
		switch v := v.(type) {
		case int:
			ast.Patch(node, &ast.IntegerNode{Value: v})
		case float64:
			ast.Patch(node, &ast.FloatNode{Value: v})
		case bool:
			ast.Patch(node, &ast.BoolNode{Value: v})
		case string:
			p.strBytes += len(v)
			ast.Patch(node, &ast.StringNode{Value: v})
		}
	case *ast.BuiltinNode:
		if !allowedBuiltin(n.Name) {
			p.refuse(n, n.Name)
		}
	case *ast.CallNode:
		// A disabled builtin parses as a call of an unknown function.
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if _, isBuiltin := builtin.Index[id.Value]; isBuiltin && !allowedBuiltin(id.Value) {
				p.refuse(n, id.Value)
			}
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "..":
			p.ranges = append(p.ranges, n)
		case "in":
			if r, ok := n.Right.(*ast.BinaryNode); ok && r.Operator == ".." {
				if p.inRanges == nil {
					p.inRanges = map[*ast.BinaryNode]bool{}
				}
				p.inRanges[r] = true
				// expr builds the list a..b and searches it unless it can
				// prove both ends constant and x an int; as a bounds test
				// it costs the same whatever the bounds.
				ast.Patch(node, &ast.BinaryNode{Operator: "&&",
					Left:  &ast.BinaryNode{Operator: ">=", Left: n.Left, Right: r.Left},
					Right: &ast.BinaryNode{Operator: "<=", Left: n.Left, Right: r.Right},
				})
			}
		case "matches":
			// A pattern known at load is compiled once, and its size is
			// bounded here; one computed per run would be compiled per run.
			pat, ok := n.Right.(*ast.StringNode)
			if !ok {
				p.fail(n, "matches needs a fixed pattern (a string or a string var), not a computed one")
				return
			}
			if msg := checkPattern(pat.Value); msg != "" {
				p.fail(pat, "%s", msg)
			}
		}
	case *ast.VariableDeclaratorNode:
		p.fail(n, "let is not allowed in rules (declare constants under vars)")
	}
}

// checkRanges refuses ranges anywhere but after in: x in 1..10 is a bounds
// test, while a range used as a value is a list that costs memory and time
// in proportion to its length. It runs once the walk is done, since the
// walk reaches a range before the in above it.
func (p *exprPatcher) checkRanges() {
	for _, r := range p.ranges {
		if !p.inRanges[r] {
			p.fail(r, "a range (a..b) is only allowed after in, as in x in 1..10")
		}
	}
}

// maxRegexpInst bounds a matches pattern's compiled size: matching costs
// time in proportion to it, for every node, every tick.
const maxRegexpInst = 2000

// checkPattern says what is wrong with a matches pattern, or "".
func checkPattern(pat string) string {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return fmt.Sprintf("bad pattern: %v", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return fmt.Sprintf("bad pattern: %v", err)
	}
	if n := len(prog.Inst); n > maxRegexpInst {
		return fmt.Sprintf("pattern is too large (%d instructions compiled, limit %d)", n, maxRegexpInst)
	}
	return ""
}

func (p *exprPatcher) refuse(n ast.Node, name string) {
	switch name {
	case "all", "none", "any", "one", "filter", "map", "count", "sum", "find", "findIndex",
		"findLast", "findLastIndex", "groupBy", "sortBy", "reduce":
		p.fail(n, "%s is not allowed in rules (rules may not loop)", name)
	default:
		p.fail(n, "function %s is not allowed in rules", name)
	}
}

func allowedBuiltin(name string) bool {
	for _, b := range exprBuiltins {
		if b == name {
			return true
		}
	}
	return false
}
