// Package testplugin is shared by the plugins the manager's tests build:
// each reports what it received by publishing a Record through the host,
// so a test sees every attempt on a real NATS server.
package testplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/happen-dev/happen/sdk"
)

// Record is what a test plugin publishes for each call.
type Record struct {
	Plugin         string         `json:"plugin"`
	Phase          string         `json:"phase"` // start or end
	Op             string         `json:"op"`    // execute or undo
	EventID        string         `json:"eventId"`
	EventType      string         `json:"eventType"`
	DownID         string         `json:"downId"`
	Rule           string         `json:"rule"`
	With           map[string]any `json:"with"`
	Resolve        bool           `json:"resolve"`
	IdempotencyKey string         `json:"idempotencyKey"`
	Pid            int            `json:"pid"`
}

// Params are what every test plugin accepts.
var Params = []sdk.Param{
	{Name: "subject", Description: "where records are published", Required: true},
	{Name: "token", Description: "a secret", Secret: true},
	{Name: "note", Description: "anything"},
	{Name: "marker", Description: "a file marking that the crash happened"},
	{Name: "sleep", Description: "how long to work, as a Go duration"},
	{Name: "echo", Description: "print the token and note on stderr"},
	{Name: "permanent", Description: "fail permanently"},
	{Name: "quiet", Description: "answer at once with the time the call arrived, recording nothing"},
}

// Publish sends a record of req on its with.subject.
func Publish(ctx context.Context, plugin, phase string, req *sdk.ExecuteRequest, pid int) error {
	op := "execute"
	if req.Resolve {
		op = "undo"
	}
	subject, _ := req.With["subject"].(string)
	if subject == "" {
		return fmt.Errorf("no subject")
	}
	data, err := json.Marshal(Record{
		Plugin: plugin, Phase: phase, Op: op,
		EventID: req.Event.Context.ID, EventType: req.Event.Type, DownID: req.Down.Context.ID,
		Rule: req.Rule, With: req.With, Resolve: req.Resolve,
		IdempotencyKey: req.IdempotencyKey, Pid: pid,
	})
	if err != nil {
		return err
	}
	return req.Host.Publish(ctx, subject, data)
}

// Sleep waits with.sleep, or until ctx ends.
func Sleep(ctx context.Context, req *sdk.ExecuteRequest) error {
	s, _ := req.With["sleep"].(string)
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
