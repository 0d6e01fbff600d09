package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// output records a plugin's output lines in the engine's log. A JSON line
// (log/slog's or hclog's format) keeps its level, message and attributes;
// any other line is logged at info, or at error once a Go panic began.
type output struct {
	log    *slog.Logger
	redact func(string) string

	mu      sync.Mutex
	inPanic bool
}

func newOutput(log *slog.Logger, redact func(string) string) *output {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	return &output{log: log, redact: redact}
}

// writer returns a line-buffering writer for one of the plugin's streams.
func (o *output) writer() io.Writer { return &lineWriter{o: o} }

type lineWriter struct {
	o   *output
	mu  sync.Mutex
	buf []byte
}

// maxLine bounds how much of a line without an end is held; the rest is
// logged as it comes.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.o.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.o.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large buffer go
	}
	return len(p), nil
}

func (o *output) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	s = o.redact(s)
	var rec map[string]any
	if strings.HasPrefix(s, "{") && json.Unmarshal([]byte(s), &rec) == nil {
		o.structured(rec)
		return
	}
	o.mu.Lock()
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		o.inPanic = true
	}
	level := slog.LevelInfo
	if o.inPanic {
		level = slog.LevelError
	}
	o.mu.Unlock()
	o.log.Log(context.Background(), level, s)
}

// structured logs one JSON record. Its strings are redacted again: JSON
// escaping can hide a secret from the raw line's redaction.
func (o *output) structured(rec map[string]any) {
	level := slog.LevelInfo
	msg := ""
	var attrs []any
	for k, v := range rec {
		switch k {
		case "level", "@level":
			if s, ok := v.(string); ok {
				level = parseLevel(s)
			}
		case "msg", "@message":
			if s, ok := v.(string); ok {
				msg = o.redact(s)
			}
		case "time", "@timestamp", "@module", "@caller", "source":
			// The engine's record has its own.
		default:
			attrs = append(attrs, k, o.redactValue(v))
		}
	}
	o.log.Log(context.Background(), level, msg, attrs...)
}

func (o *output) redactValue(v any) any {
	switch x := v.(type) {
	case string:
		return o.redact(x)
	case []any:
		for i := range x {
			x[i] = o.redactValue(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = o.redactValue(x[k])
		}
		return x
	default:
		return v
	}
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "fatal", "panic":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// hcLogger lets go-plugin log through slog. Its own messages go to debug:
// the engine reports what matters itself. The logger go-plugin names after
// the plugin's executable reads the plugin's standard error; it is turned
// off because output already records those lines, with their levels.
type hcLogger struct {
	log    *slog.Logger
	stderr string // the name go-plugin gives the plugin's stderr logger
	name   string
	off    bool
	args   []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(log *slog.Logger, path string) *hcLogger {
	return &hcLogger{log: log.With("component", "go-plugin"), stderr: filepath.Base(path)}
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if l.off || level == hclog.Off {
		return
	}
	l.log.Debug(msg, append(append([]any(nil), l.args...), args...)...)
}

func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *hcLogger) enabled() bool {
	return !l.off && l.log.Enabled(context.Background(), slog.LevelDebug)
}

func (l *hcLogger) IsTrace() bool { return l.enabled() }
func (l *hcLogger) IsDebug() bool { return l.enabled() }
func (l *hcLogger) IsInfo() bool  { return l.enabled() }
func (l *hcLogger) IsWarn() bool  { return l.enabled() }
func (l *hcLogger) IsError() bool { return l.enabled() }

func (l *hcLogger) ImpliedArgs() []any { return l.args }

func (l *hcLogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
	return &c
}

func (l *hcLogger) Name() string { return l.name }

func (l *hcLogger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.ResetNamed(name)
}

func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	// go-plugin names the logger for a plugin's standard error after the
	// executable.
	c.off = name == l.stderr || strings.HasSuffix(name, "."+l.stderr)
	return &c
}

func (l *hcLogger) SetLevel(hclog.Level) {}

func (l *hcLogger) GetLevel() hclog.Level {
	if !l.enabled() {
		return hclog.Off
	}
	return hclog.Trace
}

func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{o: newOutput(l.log, nil)}
}
