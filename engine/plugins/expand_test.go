package plugins

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/sdk"
)

func TestExpand(t *testing.T) {
	t.Setenv("HAPPEN_X_TOKEN", "t0ken")
	t.Setenv("HAPPEN_X_EMPTY", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		with    map[string]any
		want    map[string]any
		secrets []string
		err     string // part of the error; empty for none
	}{
		{name: "nil", with: nil, want: nil},
		{
			name: "plain values untouched",
			with: map[string]any{"a": "x", "n": 3, "f": 0.5, "b": true, "z": nil, "dollar": "$5 and ${other}"},
			want: map[string]any{"a": "x", "n": 3, "f": 0.5, "b": true, "z": nil, "dollar": "$5 and ${other}"},
		},
		{
			name:    "env inside a string",
			with:    map[string]any{"h": "Bearer ${env:HAPPEN_X_TOKEN}!"},
			want:    map[string]any{"h": "Bearer t0ken!"},
			secrets: []string{"t0ken"},
		},
		{
			name:    "file, trailing newline dropped, nested in map and list",
			with:    map[string]any{"m": map[string]any{"l": []any{1, "${file:" + file + "}"}}},
			want:    map[string]any{"m": map[string]any{"l": []any{1, "from-file"}}},
			secrets: []string{"from-file"},
		},
		{
			name:    "two references, one empty variable",
			with:    map[string]any{"s": "${env:HAPPEN_X_TOKEN}:${env:HAPPEN_X_EMPTY}"},
			want:    map[string]any{"s": "t0ken:"},
			secrets: []string{"t0ken", ""},
		},
		{
			name:    "default for an unset or empty variable is no secret",
			with:    map[string]any{"f": "${env:HAPPEN_X_UNSET:-json}", "g": "${env:HAPPEN_X_EMPTY:-slack}", "h": "${env:HAPPEN_X_TOKEN:-x}"},
			want:    map[string]any{"f": "json", "g": "slack", "h": "t0ken"},
			secrets: []string{"t0ken"},
		},
		{name: "unset variable", with: map[string]any{"u": map[string]any{"v": "${env:HAPPEN_X_UNSET}"}},
			err: "with.u.v: ${env:HAPPEN_X_UNSET}: environment variable HAPPEN_X_UNSET is not set"},
		{name: "missing file", with: map[string]any{"l": []any{"${file:" + dir + "/nope}"}},
			err: "with.l[0]: ${file:" + dir + "/nope}: open " + dir + "/nope: no such file"},
		{name: "file too large", with: map[string]any{"f": "${file:" + big + "}"}, err: "is larger than"},
		{name: "empty reference", with: map[string]any{"e": "${env:}"}, err: "with.e: ${env:}: empty env reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := deepCopy(tt.with)
			got, secrets, err := expand(tt.with)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if !slices.Equal(secrets, tt.secrets) {
				t.Fatalf("secrets %q, want %q", secrets, tt.secrets)
			}
			if !reflect.DeepEqual(tt.with, orig) {
				t.Fatal("expand changed the rule's own map")
			}
		})
	}
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			out[k] = deepCopy(x)
		case []any:
			out[k] = slices.Clone(x)
		default:
			out[k] = v
		}
	}
	return out
}

func TestRedactor(t *testing.T) {
	r := newRedactor()
	if got := r.redact("nothing known"); got != "nothing known" {
		t.Fatal(got)
	}
	r.add("ab", "secret", "secret-longer", "secret")
	for in, want := range map[string]string{
		"x secret-longer y": "x [REDACTED] y",
		"secret secret":     "[REDACTED] [REDACTED]",
		"ab is too short":   "ab is too short",
	} {
		if got := r.redact(in); got != want {
			t.Fatalf("redact(%q) = %q, want %q", in, got, want)
		}
	}
	for i := range maxSecrets + 10 {
		r.add(fmt.Sprintf("value-%04d", i))
	}
	if len(r.values) != maxSecrets {
		t.Fatalf("kept %d values, want %d", len(r.values), maxSecrets)
	}
}

func TestParams(t *testing.T) {
	params := map[string]sdk.Param{
		"url":   {Name: "url", Required: true, Secret: true},
		"team":  {Name: "team", Required: true},
		"extra": {Name: "extra"},
	}
	with := map[string]any{"url": "https://x/y", "extra": []any{"a"}}
	if got := missingParams(params, with); !slices.Equal(got, []string{"team"}) {
		t.Fatalf("missing = %v", got)
	}
	if got := secretParams(params, with); !slices.Equal(got, []string{"https://x/y"}) {
		t.Fatalf("secret values = %v", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{0, 200 * time.Millisecond}, {1, 400 * time.Millisecond}, {3, 1600 * time.Millisecond}, {5, 5 * time.Second}, {60, 5 * time.Second}} {
		if got := backoff(200*time.Millisecond, 5*time.Second, tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}
