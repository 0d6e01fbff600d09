package eventline

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/sdk/events"
)

func env(t *testing.T, typ string, payload any, at time.Time) events.Envelope {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Payload: raw, Context: events.Context{
		ID: "ID", Timestamp: at.UnixMilli(), Sender: "happen-engine/x", CorrelationID: "PREFIXPREFIXab12cd34",
	}}
}

func TestFormat(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 4, 5, 120e6, time.UTC)
	opts := Options{Location: time.UTC, Now: func() time.Time { return at.Add(time.Hour) }}
	for _, c := range []struct {
		name string
		env  events.Envelope
		want string
	}{
		{"node.down", env(t, events.TypeNodeDown, events.NodeDown{
			NodeID: "orders-eu-1", Pattern: "node-failure", Level: "critical", Group: "eu", AffectedNodes: []string{"orders-eu-1"},
			LagMetrics: events.LagMetrics{MessagesWaiting: 1520, AckRate: 0, LagGrowthRate: 48.5},
		}, at), "10:04:05.120  node.down       orders-eu-1     node-failure    critical  #ab12cd34  group=eu waiting=1520 ack/s=0.0 growth/s=48.5"},
		{"partition lists its nodes", env(t, events.TypeNodeDown, events.NodeDown{
			NodeID: "eu-2", Pattern: "partition", Level: "critical", AffectedNodes: []string{"eu-1", "eu-2", "eu-3"},
			LagMetrics: events.LagMetrics{MessagesWaiting: 7, AckRate: 1.25},
		}, at), "10:04:05.120  node.down       eu-2            partition       critical  #ab12cd34  waiting=7 ack/s=1.2 growth/s=0.0 nodes=3"},
		{"node.up", env(t, events.TypeNodeUp, events.NodeUp{NodeID: "orders-eu-1", Pattern: "node-failure", DownSeconds: 12.34, Reason: "left"}, at),
			"10:04:05.120  node.up         orders-eu-1     node-failure    -         #ab12cd34  down=12.3s reason=left"},
		{"system.down", env(t, events.TypeSystemDown, events.SystemDown{
			Level: "warning", Pattern: "overload", AffectedNodes: []string{"a", "b"},
			Metrics: events.SystemMetrics{Nodes: 12, LaggingNodes: 10, MessagesWaiting: 48210, PublishRate: 5400},
		}, at), "10:04:05.120  system.down     system          overload        warning   #ab12cd34  waiting=48210 lagging=10/12 publish/s=5400.0 nodes=2"},
		{"system.up", env(t, events.TypeSystemUp, events.SystemUp{Pattern: "overload", DownSeconds: 61}, at),
			"10:04:05.120  system.up       system          overload        -         #ab12cd34  down=61.0s"},
		{"rules.reloaded", env(t, events.TypeRulesReloaded, events.RulesReloaded{Files: []string{"a.yaml", "b.yaml"}, Rules: 9}, at),
			"10:04:05.120  rules.reloaded  system          -               -         #ab12cd34  rules=9 files=a.yaml,b.yaml"},
		{"rules.rejected", env(t, events.TypeRulesRejected, events.RulesRejected{File: "r.yaml", Errors: []string{"r.yaml:5:12: unknown scope", "x"}}, at),
			"10:04:05.120  rules.rejected  system          -               -         #ab12cd34  file=r.yaml errors=2 r.yaml:5:12: unknown scope"},
		{"action.failed", env(t, events.TypeActionFailed, events.ActionFailed{Plugin: "alerting", Action: "post", Error: "503 from hook"}, at),
			`10:04:05.120  action.failed   system          -               -         #ab12cd34  plugin=alerting action=post error="503 from hook"`},
		{"engine.isolated", env(t, events.TypeEngineIsolated, events.EngineIsolated{ServersSeen: 1, ServersKnown: 3, Reason: "cut off"}, at),
			`10:04:05.120  engine.isolated  system          -               -         #ab12cd34  servers=1/3 reason="cut off"`},
		{"engine.rejoined", env(t, events.TypeEngineRejoined, events.EngineRejoined{IsolatedSeconds: 42, ServersSeen: 3}, at),
			`10:04:05.120  engine.rejoined  system          -               -         #ab12cd34  isolated=42.0s servers=3`},
		{"unknown type: the payload", env(t, "orders.audit", map[string]any{"reason": "no servers"}, at),
			`10:04:05.120  orders.audit    system          -               -         #ab12cd34  {"reason":"no servers"}`},
		{"another day: the date", env(t, events.TypeSystemUp, events.SystemUp{Pattern: "overload"}, at.Add(-48*time.Hour)),
			"2026-12-01 10:04:05.120  system.up       system          overload        -         #ab12cd34  down=0.0s"},
	} {
		if got := Format(c.env, opts); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestFormatNoCorrelation(t *testing.T) {
	e := env(t, events.TypeRulesReloaded, events.RulesReloaded{Rules: 1}, time.Now())
	e.Context.CorrelationID = ""
	if got := Format(e, Options{}); !strings.Contains(got, "  -  ") || strings.Contains(got, "#") {
		t.Fatalf("no correlation id: %q", got)
	}
	// A payload that is not JSON still gives a line.
	e.Payload = json.RawMessage(`not json`)
	e.Type = events.TypeNodeDown
	if got := Format(e, Options{}); !strings.Contains(got, "node.down") {
		t.Fatalf("odd payload: %q", got)
	}
}

func TestColor(t *testing.T) {
	at := time.Now()
	for _, c := range []struct {
		env  events.Envelope
		code string
	}{
		{env(t, events.TypeNodeDown, events.NodeDown{Level: "critical"}, at), red},
		{env(t, events.TypeNodeDown, events.NodeDown{Level: "warning"}, at), yellow},
		{env(t, events.TypeSystemDown, events.SystemDown{Level: "critical"}, at), red},
		{env(t, events.TypeSystemDown, events.SystemDown{Level: "warning"}, at), yellow},
		{env(t, events.TypeNodeUp, events.NodeUp{}, at), green},
		{env(t, events.TypeSystemUp, events.SystemUp{}, at), green},
		{env(t, events.TypeRulesReloaded, events.RulesReloaded{}, at), cyan},
		{env(t, events.TypeRulesRejected, events.RulesRejected{}, at), magenta},
		{env(t, events.TypeActionFailed, events.ActionFailed{}, at), magenta},
	} {
		colored := Format(c.env, Options{Color: true})
		plain := Format(c.env, Options{})
		want := "\x1b[" + c.code + "m" + pad(c.env.Type, 14) + "\x1b[0m"
		if !strings.Contains(colored, want) {
			t.Errorf("%s: %q lacks %q", c.env.Type, colored, want)
		}
		if strings.Contains(plain, "\x1b[") {
			t.Errorf("%s: colour without Color: %q", c.env.Type, plain)
		}
		if strings.ReplaceAll(strings.ReplaceAll(colored, "\x1b["+c.code+"m", ""), "\x1b[0m", "") != plain {
			t.Errorf("%s: colour changes the text: %q vs %q", c.env.Type, colored, plain)
		}
	}
}
