package rules

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/happen-dev/happen/rules/internal/yamlx"
	"gopkg.in/yaml.v3"
)

// syntaxDiagnostic turns a yaml.v3 parse error into a diagnostic at the
// line at fault (see yamlx.SyntaxFault), column 1, the line kept within
// the file's lines.
func syntaxDiagnostic(file string, data []byte, err error, lines int) Diagnostic {
	line, msg := yamlx.SyntaxFault(data, err)
	if lines > 0 && line > lines {
		line = lines
	}
	return Diagnostic{Pos: Position{File: file, Line: line, Col: 1}, Msg: "yaml: " + msg}
}

// srcPos is a place in the file, 1-based, column in runes as yaml.v3
// counts them.
type srcPos struct{ line, col int }

// scalarMap maps rune offsets within a scalar's value to where each rune
// was written, so an expression error points into the file itself.
type scalarMap struct {
	start srcPos   // the node's own position: the fallback
	runes []srcPos // per value rune; nil when the layout could not be traced
	end   srcPos   // just after the last rune
}

// at returns the file position of the rune at offset off of the value.
func (m scalarMap) at(off int) srcPos {
	if m.runes == nil || off < 0 {
		return m.start
	}
	if off < len(m.runes) {
		return m.runes[off]
	}
	return m.end
}

// srcTok is one element of a scalar as written: a rune of text (an escape
// sequence counts as the rune it stands for) or a line break.
type srcTok struct {
	r   rune
	brk bool
	pos srcPos
}

// mapScalar traces where each rune of a scalar node's value sits in src.
// It reads the node's style (plain, single or double quoted, literal or
// folded) and aligns the text as written with the value yaml.v3 produced,
// so line folding, indentation and escapes are accounted for. If the two
// cannot be aligned, every offset maps to the node's position.
func mapScalar(lines []string, n *yaml.Node) scalarMap {
	m := scalarMap{start: srcPos{n.Line, n.Column}}
	if n.Line < 1 || n.Line > len(lines) {
		return m
	}
	var toks []srcTok
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		toks = blockTokens(lines, n.Line)
	case n.Style&yaml.DoubleQuotedStyle != 0:
		toks = flowTokens(lines, n.Line, n.Column+1, '"')
	case n.Style&yaml.SingleQuotedStyle != 0:
		toks = flowTokens(lines, n.Line, n.Column+1, '\'')
	default:
		toks = flowTokens(lines, n.Line, n.Column, 0)
	}
	value := []rune(n.Value)
	runes := make([]srcPos, 0, len(value))
	j := 0
	for _, r := range value {
		for {
			if j >= len(toks) {
				return m
			}
			t := toks[j]
			if !t.brk && t.r == r {
				break
			}
			if t.brk && (r == ' ' || r == '\n') {
				break
			}
			if t.brk {
				// A break folded away: the one before empty lines, or the
				// last before the end of a literal or folded block.
				j++
				continue
			}
			return m
		}
		runes = append(runes, toks[j].pos)
		j++
	}
	m.runes = runes
	m.end = m.start
	if len(runes) > 0 {
		last := runes[len(runes)-1]
		m.end = srcPos{last.line, last.col + 1}
	}
	return m
}

// blockTokens returns the content of a literal or folded block scalar whose
// indicator is on line ind: the lines after it with their indentation
// removed. The indentation is that of the first non-empty line.
func blockTokens(lines []string, ind int) []srcTok {
	var toks []srcTok
	indent := -1
	for ln := ind + 1; ln <= len(lines); ln++ {
		line := []rune(lines[ln-1])
		if strings.TrimLeft(string(line), " ") == "" {
			toks = append(toks, srcTok{brk: true, pos: srcPos{ln, len(line) + 1}})
			continue
		}
		lead := len(line) - len([]rune(strings.TrimLeft(string(line), " ")))
		if indent < 0 {
			indent = lead
		}
		if lead < indent {
			break
		}
		for i := indent; i < len(line); i++ {
			toks = append(toks, srcTok{r: line[i], pos: srcPos{ln, i + 1}})
		}
		toks = append(toks, srcTok{brk: true, pos: srcPos{ln, len(line) + 1}})
	}
	return toks
}

// flowTokens returns the text of a plain (quote 0) or quoted scalar that
// starts at line, col. Continuation lines lose their leading and trailing
// white space, as flow folding does; quoted scalars decode their escapes.
func flowTokens(lines []string, line, col int, quote rune) []srcTok {
	var toks []srcTok
	for ln := line; ln <= len(lines); ln++ {
		text := []rune(lines[ln-1])
		from := 0
		if ln == line {
			from = col - 1
			if from > len(text) {
				return toks
			}
		} else {
			for from < len(text) && (text[from] == ' ' || text[from] == '\t') {
				from++
			}
		}
		to := len(text)
		for to > from && (text[to-1] == ' ' || text[to-1] == '\t') {
			to--
		}
		escapedBreak := false
		for i := from; i < to; i++ {
			r := text[i]
			pos := srcPos{ln, i + 1}
			switch {
			case quote != 0 && r == quote:
				if quote == '\'' && i+1 < to && text[i+1] == '\'' {
					toks = append(toks, srcTok{r: '\'', pos: pos})
					i++
					continue
				}
				return toks
			case quote == '"' && r == '\\':
				if i+1 >= len(text) {
					escapedBreak = true
					i = to
					continue
				}
				dec, width := yamlEscape(text[i+1:])
				if width == 0 {
					return toks
				}
				toks = append(toks, srcTok{r: dec, pos: pos})
				i += width
				continue
			}
			toks = append(toks, srcTok{r: r, pos: pos})
		}
		// Trailing white space was trimmed above; when it is content (it
		// ends the scalar on this line) the alignment simply stops there.
		if !escapedBreak {
			toks = append(toks, srcTok{brk: true, pos: srcPos{ln, to + 1}})
		}
	}
	return toks
}

// yamlEscape decodes the escape sequence after a backslash in a
// double-quoted scalar, returning the rune and how many runes it spans.
func yamlEscape(s []rune) (rune, int) {
	digits := 0
	switch s[0] {
	case '0':
		return 0, 1
	case 'a':
		return '\a', 1
	case 'b':
		return '\b', 1
	case 't', '\t':
		return '\t', 1
	case 'n':
		return '\n', 1
	case 'v':
		return '\v', 1
	case 'f':
		return '\f', 1
	case 'r':
		return '\r', 1
	case 'e':
		return 0x1b, 1
	case ' ', '"', '/', '\\':
		return s[0], 1
	case 'N':
		return 0x85, 1
	case '_':
		return 0xa0, 1
	case 'L':
		return 0x2028, 1
	case 'P':
		return 0x2029, 1
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	default:
		return 0, 0
	}
	if len(s) < 1+digits {
		return 0, 0
	}
	v, err := strconv.ParseUint(string(s[1:1+digits]), 16, 32)
	if err != nil || !utf8.ValidRune(rune(v)) {
		return 0, 0
	}
	return rune(v), 1 + digits
}
