package params

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFloat(t *testing.T) {
	cases := []struct {
		v       any
		want    float64
		wantErr string
	}{
		{nil, 0.8, ""},
		{0.5, 0.5, ""},
		{2, 2, ""},
		{int64(3), 3, ""},
		{json.Number("0.25"), 0.25, ""},
		{" 0.75 ", 0.75, ""},
		{"fast", 0, `parameter factor: "fast" is not a number`},
		{"NaN", 0, "not a finite number"},
		{true, 0, "is not a number"},
	}
	for _, c := range cases {
		with := map[string]any{}
		if c.v != nil {
			with["factor"] = c.v
		}
		got, err := Float(with, "factor", 0.8)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: error %v, want %q", c.v, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: got %v, %v; want %v", c.v, got, err, c.want)
		}
	}
}

func TestInt(t *testing.T) {
	if _, set, err := Int(map[string]any{}, "n"); set || err != nil {
		t.Fatalf("absent: %v %v", set, err)
	}
	for _, v := range []any{10, 10.0, "10", json.Number("10"), int64(10)} {
		n, set, err := Int(map[string]any{"n": v}, "n")
		if n != 10 || !set || err != nil {
			t.Errorf("%v (%T): %v %v %v", v, v, n, set, err)
		}
	}
	for _, v := range []any{10.5, "x", 1e12} {
		if _, _, err := Int(map[string]any{"n": v}, "n"); err == nil || !strings.Contains(err.Error(), "parameter n") {
			t.Errorf("%v: error %v", v, err)
		}
	}
}

func TestBool(t *testing.T) {
	cases := []struct {
		v    any
		want bool
		ok   bool
	}{
		{nil, true, true}, {false, false, true}, {"false", false, true}, {"TRUE", true, true},
		{"maybe", false, false}, {1, false, false},
	}
	for _, c := range cases {
		with := map[string]any{}
		if c.v != nil {
			with["b"] = c.v
		}
		got, err := Bool(with, "b", true)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("%v: got %v, %v", c.v, got, err)
		}
	}
}

func TestStringAndMap(t *testing.T) {
	if s, set, err := String(map[string]any{"url": "http://x"}, "url"); s != "http://x" || !set || err != nil {
		t.Fatalf("string: %q %v %v", s, set, err)
	}
	if _, set, _ := String(map[string]any{"url": ""}, "url"); set {
		t.Fatal("empty string counts as set")
	}
	if _, _, err := String(map[string]any{"url": 3}, "url"); err == nil {
		t.Fatal("number accepted as string")
	}
	m, err := StringMap(map[string]any{"h": map[string]any{"A": "1", "B": 2, "C": true}}, "h")
	if err != nil || m["A"] != "1" || m["B"] != "2" || m["C"] != "true" {
		t.Fatalf("map: %v %v", m, err)
	}
	if _, err := StringMap(map[string]any{"h": map[string]any{"A": []any{1}}}, "h"); err == nil {
		t.Fatal("list value accepted")
	}
	if _, err := StringMap(map[string]any{"h": "A: 1"}, "h"); err == nil {
		t.Fatal("string accepted as map")
	}
}

func TestCheck(t *testing.T) {
	if err := Check(map[string]any{"factor": 1}, "factor", "maxAckPending"); err != nil {
		t.Fatal(err)
	}
	err := Check(map[string]any{"factr": 1, "zz": 2}, "factor", "maxAckPending")
	if err == nil || err.Error() != "unknown parameter(s) factr, zz (known: factor, maxAckPending)" {
		t.Fatalf("got %v", err)
	}
}
