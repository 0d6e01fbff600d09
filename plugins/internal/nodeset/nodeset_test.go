package nodeset

import (
	"slices"
	"testing"
)

func TestUnion(t *testing.T) {
	for _, c := range []struct{ a, b, want []string }{
		{nil, nil, []string{}},
		{[]string{"b", "a"}, nil, []string{"a", "b"}},
		{[]string{"b", "", "a"}, []string{"a", "c", ""}, []string{"a", "b", "c"}},
	} {
		if got := Union(c.a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("Union(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestWithout(t *testing.T) {
	a := []string{"eu-1", "eu-2", "eu-3"}
	for _, c := range []struct{ b, want []string }{
		{nil, a},
		{[]string{"eu-2"}, []string{"eu-1", "eu-3"}},
		{[]string{"eu-3", "eu-1", "eu-2", "x"}, []string{}},
	} {
		if got := Without(a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("Without(%q, %q) = %q, want %q", a, c.b, got, c.want)
		}
	}
	if !slices.Equal(a, []string{"eu-1", "eu-2", "eu-3"}) {
		t.Errorf("Without changed its input: %q", a)
	}
}
