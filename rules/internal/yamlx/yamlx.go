// Package yamlx holds the yaml.v3 helpers that both decoders of this
// module's YAML files need: package rules reads ruleset files and package
// rules/ruletest reads rule test files, and both walk a yaml.Node tree by
// hand so that every fault is reported at its file:line:col. Kept here,
// the two report the same things the same way (node names, positions,
// syntax faults, alias bombs) from one copy of the code.
package yamlx

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Describe names what a node holds, for "want X, got Y" messages: a
// mapping, a list, null, or a scalar's value quoted.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// Pos returns where n was written, 1-based, never before line 1, column
// 1: nodes yaml.v3 makes up (an empty document's) have no place.
func Pos(n *yaml.Node) (line, col int) {
	return max(n.Line, 1), max(n.Column, 1)
}

// Lines splits data into lines as yaml.v3 numbers them and counts their
// columns: without a leading byte order mark, with CRLF read as LF.
func Lines(data []byte) []string {
	return strings.Split(strings.ReplaceAll(strings.TrimPrefix(string(data), "\ufeff"), "\r\n", "\n"), "\n")
}

// maxChain bounds a chain of aliases, each naming the next.
const maxChain = 100

// Aliases follows aliases for one decoder, within a budget of nodes: a
// few lines of aliases of aliases can stand for billions of nodes (an
// alias bomb), which must fail instead of exhausting memory.
type Aliases struct {
	limit, left int
}

// NewAliases returns an Aliases that lets a decoder visit limit nodes.
func NewAliases(limit int) *Aliases {
	return &Aliases{limit: limit, left: limit}
}

// AliasFault says why Deref returned no node.
type AliasFault struct {
	Node  *yaml.Node // where to report it
	Msg   string     // the message, starting "yaml: "
	Spent bool       // the budget ran out: what was decoded is incomplete
}

// Deref returns the node n stands for, following aliases, and spends one
// node of the budget on it. It returns nil for nil, for a chain of more
// than 100 aliases and once the budget is spent. The fault is non-nil for
// each chain too long and once, when the budget runs out; nil otherwise.
func (a *Aliases) Deref(n *yaml.Node) (*yaml.Node, *AliasFault) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > maxChain {
			return nil, &AliasFault{Node: n, Msg: "yaml: alias chain too long"}
		}
		n = n.Alias
	}
	if n == nil {
		return nil, nil
	}
	a.left--
	if a.left == 0 {
		return nil, &AliasFault{Node: n, Msg: "yaml: too many nodes through aliases (limit " + strconv.Itoa(a.limit) + ")", Spent: true}
	}
	if a.left < 0 {
		return nil, nil
	}
	return n, nil
}
