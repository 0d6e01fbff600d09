// Package eventline renders one happen event as one line of text for a
// terminal: `happen events` prints them as they arrive, and any command
// that shows events live can reuse the same format.
package eventline

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/sdk/events"
)

// Options shape a line.
type Options struct {
	// Color wraps the type in ANSI colour: down and critical red, warning
	// yellow, up green, rules and actions cyan or magenta.
	Color bool
	// Location is the time zone of the timestamp; default time.Local.
	Location *time.Location
	// Now decides whether the date is shown (only for events of another
	// day); default time.Now.
	Now func() time.Time
}

// ANSI SGR codes.
const (
	red     = "31"
	green   = "32"
	yellow  = "33"
	magenta = "35"
	cyan    = "36"
)

// Format returns env as one line, without a newline:
//
//	10:04:05.120  node.down       orders-eu-1   node-failure  critical  #Zk3v9QeA  group=eu waiting=1520 ack/s=0.0 growth/s=48.5
//
// The columns are local time, type, node (or "system"), pattern, level,
// the last characters of the correlation id (the part that differs between
// incidents) and the key figures of the payload.
func Format(env events.Envelope, o Options) string {
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	at := time.UnixMilli(env.Context.Timestamp).In(loc)
	layout := "15:04:05.000"
	if y, m, d := at.Date(); y != now().In(loc).Year() || m != now().In(loc).Month() || d != now().In(loc).Day() {
		layout = "2006-01-02 15:04:05.000"
	}

	var p payload
	_ = json.Unmarshal(env.Payload, &p) // an odd payload still prints its type and time
	subject := "system"
	if strings.HasPrefix(env.Type, "node.") {
		subject = dash(p.NodeID)
	}

	var b strings.Builder
	b.WriteString(at.Format(layout))
	b.WriteString("  ")
	b.WriteString(colorize(pad(env.Type, 14), colorOf(env.Type, p.Level), o.Color))
	fmt.Fprintf(&b, "  %-14s  %-14s  %-8s  %-9s", subject, dash(p.Pattern), dash(p.Level), shortID(env.Context.CorrelationID))
	if fig := figures(env.Type, &p, env.Payload); fig != "" {
		b.WriteString("  ")
		b.WriteString(fig)
	}
	return strings.TrimRight(b.String(), " ")
}

// payload holds the fields of every event type that a line shows.
type payload struct {
	NodeID          string                `json:"nodeId"`
	Pattern         string                `json:"pattern"`
	Level           string                `json:"level"`
	Group           string                `json:"group"`
	AffectedNodes   []string              `json:"affectedNodes"`
	LagMetrics      *events.LagMetrics    `json:"lagMetrics"`
	Metrics         *events.SystemMetrics `json:"metrics"`
	DownSeconds     float64               `json:"downSeconds"`
	Reason          string                `json:"reason"`
	Files           []string              `json:"files"`
	Rules           int                   `json:"rules"`
	File            string                `json:"file"`
	Errors          []string              `json:"errors"`
	Plugin          string                `json:"plugin"`
	Action          string                `json:"action"`
	Error           string                `json:"error"`
	ServersSeen     int                   `json:"serversSeen"`
	ServersKnown    int                   `json:"serversKnown"`
	IsolatedSeconds float64               `json:"isolatedSeconds"`
}

func figures(typ string, p *payload, raw json.RawMessage) string {
	var f []string
	add := func(k, v string) { f = append(f, k+"="+v) }
	switch typ {
	case events.TypeNodeDown:
		if p.Group != "" {
			add("group", p.Group)
		}
		if m := p.LagMetrics; m != nil {
			add("waiting", strconv.Itoa(m.MessagesWaiting))
			add("ack/s", num(m.AckRate))
			add("growth/s", num(m.LagGrowthRate))
		}
		if len(p.AffectedNodes) > 1 {
			add("nodes", strconv.Itoa(len(p.AffectedNodes)))
		}
	case events.TypeSystemDown:
		if m := p.Metrics; m != nil {
			add("waiting", strconv.Itoa(m.MessagesWaiting))
			add("lagging", fmt.Sprintf("%d/%d", m.LaggingNodes, m.Nodes))
			add("publish/s", num(m.PublishRate))
		}
		add("nodes", strconv.Itoa(len(p.AffectedNodes)))
	case events.TypeNodeUp, events.TypeSystemUp:
		add("down", num(p.DownSeconds)+"s")
		if p.Reason != "" {
			add("reason", p.Reason)
		}
	case events.TypeRulesReloaded:
		add("rules", strconv.Itoa(p.Rules))
		add("files", strings.Join(p.Files, ","))
	case events.TypeRulesRejected:
		add("file", p.File)
		add("errors", strconv.Itoa(len(p.Errors)))
		if len(p.Errors) > 0 {
			f = append(f, p.Errors[0])
		}
	case events.TypeActionFailed:
		add("plugin", p.Plugin)
		add("action", p.Action)
		add("error", strconv.Quote(p.Error))
	case events.TypeEngineIsolated:
		add("servers", fmt.Sprintf("%d/%d", p.ServersSeen, p.ServersKnown))
		add("reason", strconv.Quote(p.Reason))
	case events.TypeEngineRejoined:
		add("isolated", num(p.IsolatedSeconds)+"s")
		add("servers", strconv.Itoa(p.ServersSeen))
	default:
		return truncate(string(raw), 160)
	}
	return strings.Join(f, " ")
}

func colorOf(typ, level string) string {
	switch {
	case strings.HasSuffix(typ, ".up"):
		return green
	case level == events.LevelWarning:
		return yellow
	case strings.HasSuffix(typ, ".down") || level == events.LevelCritical:
		return red
	case typ == events.TypeRulesReloaded:
		return cyan
	case typ == events.TypeEngineIsolated:
		return red
	case typ == events.TypeEngineRejoined:
		return green
	case strings.HasPrefix(typ, "rules.") || strings.HasPrefix(typ, "action."):
		return magenta
	}
	return ""
}

func colorize(s, code string, on bool) string {
	if !on || code == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// pad pads s to n columns before colour is added, so columns line up
// whether or not the line is coloured.
func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortID is the tail of a correlation id: ids from one engine share their
// beginning (a per-process prefix) and differ at the end.
func shortID(id string) string {
	if id == "" {
		return "-"
	}
	if len(id) > 8 {
		id = id[len(id)-8:]
	}
	return "#" + id
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
