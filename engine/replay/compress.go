package replay

import (
	"strconv"
	"strings"

	"github.com/happen-dev/happen/rules/ruletest"
)

// Compress writes samples in promtool's series notation, the one rules
// tests read (ruletest.ParseSeries gives them back): runs of missing
// samples as _xN, runs of one value as axN, and steady climbs or falls as
// a+bxN, so a recorded series stays readable.
func Compress(s []ruletest.Sample) string {
	var b strings.Builder
	item := func(parts ...string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		for _, p := range parts {
			b.WriteString(p)
		}
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for i := 0; i < len(s); {
		if s[i].Missing {
			j := i
			for j < len(s) && s[j].Missing {
				j++
			}
			if n := j - i; n == 1 {
				item("_")
			} else {
				item("_x", strconv.Itoa(n)) // _xN is N samples, not N+1
			}
			i = j
			continue
		}
		v := s[i].Value
		if i+1 == len(s) || s[i+1].Missing {
			item(u(v))
			i++
			continue
		}
		next := s[i+1].Value
		j := i + 1 // the run is s[i..j]
		for j+1 < len(s) && !s[j+1].Missing && step(s[j].Value, s[j+1].Value) == step(v, next) {
			j++
		}
		n := j - i
		switch {
		case next == v:
			item(u(v), "x", strconv.Itoa(n))
		case n == 1:
			// Two values: a b reads better than a+bx1, and b may begin a
			// longer run of its own.
			item(u(v))
			i++
			continue
		case next > v:
			item(u(v), "+", u(next-v), "x", strconv.Itoa(n))
		default:
			item(u(v), "-", u(v-next), "x", strconv.Itoa(n))
		}
		i = j + 1
	}
	return b.String()
}

// step is the signed difference b-a, in a form that compares equal for
// equal differences whatever their sign.
func step(a, b uint64) [2]uint64 {
	if b >= a {
		return [2]uint64{0, b - a}
	}
	return [2]uint64{1, a - b}
}
