package ruletest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// vals writes expected samples: numbers, and -1 for `_`.
func vals(xs ...int) []Sample {
	out := make([]Sample, len(xs))
	for i, x := range xs {
		if x < 0 {
			out[i] = Sample{Missing: true}
		} else {
			out[i] = Sample{Value: uint64(x)}
		}
	}
	return out
}

func TestParseSeries(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Sample
	}{
		{"5", vals(5)},
		{"1 2 3", vals(1, 2, 3)},
		{"  1\t2  ", vals(1, 2)},
		// promtool's own examples, with values that stay counts
		{"1x4", vals(1, 1, 1, 1, 1)},
		{"1+0x4", vals(1, 1, 1, 1, 1)},
		{"2+4x3", vals(2, 6, 10, 14)},
		{"9-2x4", vals(9, 7, 5, 3, 1)},
		{"1 _x3 4", vals(1, -1, -1, -1, 4)},
		{"_", vals(-1)},
		{"_x0 7", vals(7)},
		{"0x0", vals(0)},
		{"-0", vals(0)},
		{"+3", vals(3)},
		{"0+20x2 40x1 _ 60", vals(0, 20, 40, 40, 40, -1, 60)},
		{"4-4x1", vals(4, 0)},
	} {
		got, err := ParseSeries(c.in)
		if err != nil {
			t.Errorf("ParseSeries(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseSeries(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseSeriesErrors(t *testing.T) {
	for _, c := range []struct {
		in  string
		col int
		msg string
	}{
		{"", 1, "empty series"},
		{"   ", 1, "empty series"},
		{"1 2 x", 5, "want a value"},
		{"0+20y30", 5, `unexpected 'y'`},
		{"0+20", 5, "a step needs a count"},
		{"0+x3", 3, "want a step after +"},
		{"1x", 3, "missing a count after x"},
		{"1xx", 3, "want a count after x"},
		{"1x3y", 4, "unexpected 'y' after the count"},
		{"1.5", 2, "whole number"},
		{"1e3", 2, "whole number"},
		{"-2", 1, "negative value"},
		{"-2+4x3", 1, "negative value"},
		{"1 5-2x3", 3, "goes below 0"},
		{"_y", 2, "unexpected 'y' after _"},
		{"_x", 3, "missing a count after _x"},
		{"_x3z", 4, "unexpected 'z' after _x3"},
		{"stale", 1, "want a value"},
		{"0x100000", 1, "longer than"},
		{"99999999999999999999", 1, "number too large"},
		{"1+9007199254740992x1", 1, "goes above"},
		{"1 2é", 4, "unexpected 'é'"},
	} {
		_, err := ParseSeries(c.in)
		var se *SeriesError
		if !errors.As(err, &se) {
			t.Errorf("ParseSeries(%q): error %v, want a SeriesError", c.in, err)
			continue
		}
		if se.Col != c.col || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("ParseSeries(%q) = column %d %q, want column %d %q", c.in, se.Col, se.Msg, c.col, c.msg)
		}
	}
}

// FuzzSeries: the parser never panics, places every fault inside the text
// (or at 1 for an empty one), and what it accepts stays within bounds and
// reads back the same once written out value by value.
func FuzzSeries(f *testing.F) {
	for _, s := range []string{"0+20x30", "1 _x3 4", "9-2x4", "0x0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSeries(s)
		if err != nil {
			var se *SeriesError
			if !errors.As(err, &se) {
				t.Fatalf("ParseSeries(%q): %v is not a SeriesError", s, err)
			}
			if n := utf8.RuneCountInString(s); se.Col < 1 || se.Col > max(n+1, 1) {
				t.Fatalf("ParseSeries(%q): column %d outside 1..%d", s, se.Col, n+1)
			}
			return
		}
		if len(got) == 0 || len(got) > maxSamples {
			t.Fatalf("ParseSeries(%q): %d samples", s, len(got))
		}
		parts := make([]string, len(got))
		for i, v := range got {
			if v.Value > maxValue {
				t.Fatalf("ParseSeries(%q): value %d above %d", s, v.Value, uint64(maxValue))
			}
			parts[i] = fmt.Sprint(v.Value)
			if v.Missing {
				parts[i] = "_"
			}
		}
		again, err := ParseSeries(strings.Join(parts, " "))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("ParseSeries(%q) = %v, written out reads back as %v, %v", s, got, again, err)
		}
	})
}
