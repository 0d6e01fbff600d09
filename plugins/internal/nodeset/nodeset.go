// Package nodeset is the arithmetic the built-in plugins do on lists of
// node ids: which nodes an incident has, and which of them are still down.
package nodeset

import "slices"

// Union returns the sorted, distinct, non-empty names of a and b.
func Union(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Without returns the names of a not in b, in a's order; a is not changed.
func Without(a, b []string) []string {
	return slices.DeleteFunc(slices.Clone(a), func(s string) bool { return slices.Contains(b, s) })
}
