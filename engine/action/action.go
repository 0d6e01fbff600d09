// Package action is the seam between rule evaluation and whatever runs a
// rule's actions: the engine hands every fired or resolved incident to a
// Dispatcher, which must return at once and do its work elsewhere.
package action

import (
	"context"
	"log/slog"

	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
)

// Job is one rule's actions for one event.
type Job struct {
	// Event is the node.down or system.down on fire, the node.up or
	// system.up on resolve.
	Event events.Envelope
	// Down is, on resolve, the down event being ended; on fire it equals Event.
	Down    events.Envelope
	Resolve bool
	Rule    string
	// Key orders jobs: jobs with one key run in the order dispatched (the
	// node id, or "system").
	Key     string
	Actions []rules.Action
}

// Dispatcher runs jobs. Dispatch never blocks the caller for long.
type Dispatcher interface {
	Dispatch(ctx context.Context, job Job)
}

// Log is the dispatcher of --dry-run: it logs what would run and runs nothing.
type Log struct{ Logger *slog.Logger }

// Dispatch logs each action of job.
func (d Log) Dispatch(_ context.Context, job Job) {
	for _, a := range job.Actions {
		d.Logger.Info("dry run: would run action",
			"plugin", a.Plugin, "rule", job.Rule, "event", job.Event.Type,
			"eventId", job.Event.Context.ID, "resolve", job.Resolve, "key", job.Key)
	}
}
