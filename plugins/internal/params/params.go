// Package params reads a rule action's `with` map for the built-in plugins.
// Values arrive as YAML decoded them, as JSON numbers after a trip through
// the plugin protocol, or as strings after ${env:..} expansion, so each
// reader accepts every spelling of its type and names the parameter in its
// error.
package params

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Check rejects parameters not in known, so a misspelt name fails loudly
// instead of silently falling back to a default.
func Check(with map[string]any, known ...string) error {
	var unknown []string
	for k := range with {
		found := false
		for _, n := range known {
			if k == n {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("unknown parameter(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// Float reads a number; def when absent.
func Float(with map[string]any, name string, def float64) (float64, error) {
	v, ok := with[name]
	if !ok || v == nil {
		return def, nil
	}
	f, err := toFloat(v)
	if err != nil {
		return 0, fmt.Errorf("parameter %s: %w", name, err)
	}
	return f, nil
}

// Int reads a whole number; set is false when absent.
func Int(with map[string]any, name string) (n int, set bool, err error) {
	v, ok := with[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	f, err := toFloat(v)
	if err != nil {
		return 0, false, fmt.Errorf("parameter %s: %w", name, err)
	}
	if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, false, fmt.Errorf("parameter %s: %v is not a whole number in range", name, v)
	}
	return int(f), true, nil
}

// Bool reads a boolean; def when absent.
func Bool(with map[string]any, name string, def bool) (bool, error) {
	v, ok := with[name]
	if !ok || v == nil {
		return def, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		p, err := strconv.ParseBool(strings.TrimSpace(b))
		if err != nil {
			return false, fmt.Errorf("parameter %s: %q is not a boolean", name, b)
		}
		return p, nil
	}
	return false, fmt.Errorf("parameter %s: %v (%T) is not a boolean", name, v, v)
}

// String reads a string; set is false when absent or empty.
func String(with map[string]any, name string) (s string, set bool, err error) {
	v, ok := with[name]
	if !ok || v == nil {
		return "", false, nil
	}
	s, ok = v.(string)
	if !ok {
		return "", false, fmt.Errorf("parameter %s: %v (%T) is not a string", name, v, v)
	}
	return s, s != "", nil
}

// StringMap reads a map of strings; nil when absent. Scalar values are
// turned into their text, as a header value written `X-Try: 1` in YAML
// means the string "1".
func StringMap(with map[string]any, name string) (map[string]string, error) {
	v, ok := with[name]
	if !ok || v == nil {
		return nil, nil
	}
	out := map[string]string{}
	add := func(k string, val any) error {
		switch s := val.(type) {
		case string:
			out[k] = s
		case bool, int, int64, float64, json.Number:
			out[k] = fmt.Sprint(s)
		default:
			return fmt.Errorf("parameter %s: %s: %v (%T) is not a string", name, k, val, val)
		}
		return nil
	}
	switch m := v.(type) {
	case map[string]any:
		for k, val := range m {
			if err := add(k, val); err != nil {
				return nil, err
			}
		}
	case map[string]string:
		for k, val := range m {
			out[k] = val
		}
	default:
		return nil, fmt.Errorf("parameter %s: %v (%T) is not a map", name, v, v)
	}
	return out, nil
}

func toFloat(v any) (float64, error) {
	f, err := anyFloat(v)
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("%v is not a finite number", v)
	}
	return f, err
}

func anyFloat(v any) (float64, error) {
	switch n := v.(type) {
	case float64:
		return n, nil
	case float32:
		return float64(n), nil
	case int:
		return float64(n), nil
	case int64:
		return float64(n), nil
	case int32:
		return float64(n), nil
	case uint64:
		return float64(n), nil
	case json.Number:
		return n.Float64()
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", n)
		}
		return f, nil
	}
	return 0, fmt.Errorf("%v (%T) is not a number", v, v)
}
