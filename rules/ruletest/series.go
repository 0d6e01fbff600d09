package ruletest

import (
	"fmt"
	"strings"
	"unicode"
)

// Sample is one value of a series at one tick.
type Sample struct {
	Value uint64
	// Missing is `_`: nothing was read this tick.
	Missing bool
}

// SeriesError is a fault in a series, at a column of its text (1-based,
// counted in characters as YAML counts them).
type SeriesError struct {
	Col int
	Msg string
}

func (e *SeriesError) Error() string { return fmt.Sprintf("column %d: %s", e.Col, e.Msg) }

// Bounds of what a series may say. maxSamples keeps a typo such as
// 0x1000000000 from allocating the machine away; maxValue keeps every value
// exact in the float64 rates the tracker computes.
const (
	maxSamples = 100_000
	maxValue   = 1 << 53
)

// ParseSeries expands promtool's series notation: items separated by
// spaces, each one of
//
//	a        the value a
//	axN      a, N more times: N+1 values
//	a+bxN    a, a+b, ..., a+N*b: N+1 values
//	a-bxN    a, a-b, ..., a-N*b: N+1 values
//	_        no sample
//	_xN      N missing samples (not N+1: promtool's `_x3` is `_ _ _`)
//
// Values are whole numbers and never negative: they are counts and
// sequences.
func ParseSeries(s string) ([]Sample, error) {
	rs := []rune(s)
	var out []Sample
	i := 0
	for {
		for i < len(rs) && unicode.IsSpace(rs[i]) {
			i++
		}
		if i == len(rs) {
			break
		}
		start := i
		for i < len(rs) && !unicode.IsSpace(rs[i]) {
			i++
		}
		var err error
		out, err = item(out, rs[start:i], start+1)
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		if strings.TrimSpace(s) == "" {
			return nil, &SeriesError{Col: 1, Msg: "empty series (want values such as 0+10x30)"}
		}
		return nil, &SeriesError{Col: 1, Msg: "series has no samples"}
	}
	return out, nil
}

// item appends the samples of one item, whose first character is at
// column col.
func item(out []Sample, it []rune, col int) ([]Sample, error) {
	fail := func(at int, format string, args ...any) ([]Sample, error) {
		return nil, &SeriesError{Col: col + at, Msg: fmt.Sprintf(format, args...)}
	}
	room := func(n uint64) bool { return uint64(len(out))+n <= maxSamples }
	if it[0] == '_' {
		if len(it) == 1 {
			if !room(1) {
				return fail(0, "series longer than %d samples", maxSamples)
			}
			return append(out, Sample{Missing: true}), nil
		}
		if it[1] != 'x' {
			return fail(1, "unexpected %q after _ (want _ or _xN)", it[1])
		}
		n, end, err := number(it, 2, "a count after _x")
		if err != nil {
			return fail(end, "%s", err)
		}
		if end != len(it) {
			return fail(end, "unexpected %q after _x%d", it[end], n)
		}
		if !room(n) {
			return fail(0, "_x%d makes the series longer than %d samples", n, maxSamples)
		}
		for range n {
			out = append(out, Sample{Missing: true})
		}
		return out, nil
	}

	neg := false
	at := 0
	if it[0] == '+' || it[0] == '-' {
		neg = it[0] == '-'
		at = 1
	}
	a, at, err := number(it, at, "a value")
	if err != nil {
		return fail(at, "%s", err)
	}
	if neg && a != 0 {
		return fail(0, "negative value -%d (series hold counts and sequences)", a)
	}
	if at == len(it) {
		if !room(1) {
			return fail(0, "series longer than %d samples", maxSamples)
		}
		return append(out, Sample{Value: a}), nil
	}
	var step uint64
	down := false
	if c := it[at]; c == '+' || c == '-' {
		down = c == '-'
		stepAt := at + 1
		step, at, err = number(it, stepAt, "a step after "+string(c))
		if err != nil {
			return fail(at, "%s", err)
		}
		if at == len(it) {
			return fail(at, "a step needs a count: %s%c%dxN", string(it[:stepAt-1]), c, step)
		}
	}
	if it[at] != 'x' {
		return fail(at, "unexpected %q (want a+bxN, a-bxN, axN or a value)", it[at])
	}
	n, end, err := number(it, at+1, "a count after x")
	if err != nil {
		return fail(end, "%s", err)
	}
	if end != len(it) {
		return fail(end, "unexpected %q after the count", it[end])
	}
	if !room(n + 1) {
		return fail(0, "%s makes the series longer than %d samples", string(it), maxSamples)
	}
	// Compared by division: n*step may not fit in 64 bits.
	switch {
	case step == 0:
	case down && n > a/step:
		return fail(0, "%s goes below 0 (series hold counts and sequences)", string(it))
	case !down && n > (maxValue-a)/step:
		return fail(0, "%s goes above %d", string(it), uint64(maxValue))
	}
	v := a
	for k := uint64(0); k <= n; k++ {
		out = append(out, Sample{Value: v})
		if k < n {
			if down {
				v -= step
			} else {
				v += step
			}
		}
	}
	return out, nil
}

// number reads the decimal digits of rs from i and returns their value and
// the index after them. On error, the index is where the fault is.
func number(rs []rune, i int, what string) (uint64, int, error) {
	start := i
	var v uint64
	for i < len(rs) && rs[i] >= '0' && rs[i] <= '9' {
		v = v*10 + uint64(rs[i]-'0')
		if v > maxValue {
			return 0, start, fmt.Errorf("number too large (at most %d)", uint64(maxValue))
		}
		i++
	}
	if i == start {
		if i == len(rs) {
			return 0, i, fmt.Errorf("missing %s", what)
		}
		if rs[i] == '.' || rs[i] == 'e' || rs[i] == 'E' {
			return 0, i, fmt.Errorf("want %s as a whole number", what)
		}
		return 0, i, fmt.Errorf("want %s, got %q", what, rs[i])
	}
	if i < len(rs) && (rs[i] == '.' || rs[i] == 'e' || rs[i] == 'E') {
		return 0, i, fmt.Errorf("want %s as a whole number, got %q", what, rs[i])
	}
	return v, i, nil
}
