package plugins

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/happen-dev/happen/sdk"
)

// reRef finds ${env:NAME}, ${env:NAME:-default} and ${file:PATH} in a
// `with` string.
var reRef = regexp.MustCompile(`\$\{(env|file):([^}]*)\}`)

// maxSecretFile bounds what ${file:..} reads.
const maxSecretFile = 1 << 20

// expand returns a copy of with in which every ${env:NAME} and
// ${file:PATH} inside a string, at any depth, is replaced by the variable's
// value or the file's content (one trailing newline dropped). It also
// returns the values it put in, so they can be kept out of logs. Its errors
// name the parameter and the reference, never a value.
func expand(with map[string]any) (map[string]any, []string, error) {
	if with == nil {
		return nil, nil, nil
	}
	var secrets []string
	out, err := expandValue("with", with, &secrets)
	if err != nil {
		return nil, nil, err
	}
	return out.(map[string]any), secrets, nil
}

func expandValue(path string, v any, secrets *[]string) (any, error) {
	switch x := v.(type) {
	case string:
		return expandString(path, x, secrets)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := expandValue(path+"."+k, e, secrets)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := expandValue(fmt.Sprintf("%s[%d]", path, i), e, secrets)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

func expandString(path, s string, secrets *[]string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var firstErr error
	out := reRef.ReplaceAllStringFunc(s, func(ref string) string {
		if firstErr != nil {
			return ""
		}
		m := reRef.FindStringSubmatch(ref)
		val, secret, err := resolve(m[1], m[2])
		if err != nil {
			firstErr = fmt.Errorf("%s: %s: %w", path, ref, err)
			return ""
		}
		if secret {
			*secrets = append(*secrets, val)
		}
		return val
	})
	if firstErr != nil {
		return "", firstErr
	}
	return out, nil
}

// errUnset marks a reference to an environment variable that is not set
// and has no default: an optional action is skipped rather than failed.
var errUnset = errors.New("not set")

func resolve(kind, arg string) (string, bool, error) {
	if arg == "" {
		return "", false, fmt.Errorf("empty %s reference", kind)
	}
	switch kind {
	case "env":
		// ${env:NAME:-default}, as in the shell: the default stands in for
		// an unset or empty variable, and being written in the rule it is
		// no secret.
		name, def, hasDef := strings.Cut(arg, ":-")
		if name == "" {
			return "", false, fmt.Errorf("empty %s reference", kind)
		}
		v, ok := os.LookupEnv(name)
		if hasDef && v == "" {
			return def, false, nil
		}
		if !ok {
			return "", false, fmt.Errorf("environment variable %s is %w", name, errUnset)
		}
		return v, true, nil
	default:
		f, err := os.Open(arg)
		if err != nil {
			return "", false, err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
		if err != nil {
			return "", false, fmt.Errorf("read %s: %w", arg, err)
		}
		if len(b) > maxSecretFile {
			return "", false, fmt.Errorf("%s is larger than %d bytes", arg, maxSecretFile)
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), true, nil
	}
}

// secretParams returns the string values of the parameters the plugin
// marks secret, even when written in the rule as they are.
func secretParams(params map[string]sdk.Param, with map[string]any) []string {
	var out []string
	for k, v := range with {
		if params[k].Secret {
			collectStrings(v, &out)
		}
	}
	return out
}

func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

// missingParams lists the required parameters with is missing.
func missingParams(params map[string]sdk.Param, with map[string]any) []string {
	var out []string
	for name, p := range params {
		if _, ok := with[name]; p.Required && !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// minSecret is the shortest value redacted: shorter ones would blank out
// ordinary words and numbers and protect nothing.
const minSecret = 3

// maxSecrets bounds the values a redactor remembers; the oldest go first.
const maxSecrets = 1024

// redactor replaces known secret values with a marker.
type redactor struct {
	mu     sync.RWMutex
	values []string // insertion order, no duplicates
	r      *strings.Replacer
}

func newRedactor() *redactor { return &redactor{} }

const redacted = "[REDACTED]"

func (r *redactor) add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, v := range values {
		if len(v) < minSecret || slices.Contains(r.values, v) {
			continue
		}
		r.values = append(r.values, v)
		changed = true
	}
	if !changed {
		return
	}
	if len(r.values) > maxSecrets {
		r.values = r.values[len(r.values)-maxSecrets:]
	}
	// Longest first, so a secret containing another is replaced whole.
	sorted := slices.Clone(r.values)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	pairs := make([]string, 0, 2*len(sorted))
	for _, v := range sorted {
		pairs = append(pairs, v, redacted)
	}
	r.r = strings.NewReplacer(pairs...)
}

func (r *redactor) redact(s string) string {
	r.mu.RLock()
	rep := r.r
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}
