package webview

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/sdk/events"
)

// RecentEventsShown is how many recent events the page keeps: a new
// stream starts with the last this many, and each tick adds the new ones.
const RecentEventsShown = 50

// message is one stream message: the tick's summary, and the events
// published since the previous message (newest first). EventsReset says
// Events is the whole list, as on a new or resumed stream.
type message struct {
	*summary
	Events      []eventView `json:"events"`
	EventsReset bool        `json:"eventsReset,omitempty"`
}

// serveStream sends a message now and one after every tick until the
// browser goes away or the server shuts down. A browser that loses the
// stream reconnects by itself (EventSource) and starts afresh.
func (v *view) serveStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(v.opts.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The browser's retry delay after a lost stream.
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	var ev eventCursor
	heartbeat := time.NewTicker(v.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		// Take the wake-up channel before reading, so a tick that ends
		// while this message is built is not missed.
		_, next := v.src.Ticks()
		s := v.current()
		m := message{summary: s.summary()}
		m.Events, m.EventsReset = ev.next(v.src)
		b, err := json.Marshal(&m)
		if err != nil {
			v.opts.Logger.Error("web view: encode stream message", "error", err)
			return
		}
		if !write(fmt.Appendf(nil, "id: %d\ndata: %s\n\n", s.tick, b)) {
			return
		}
		heartbeat.Reset(v.opts.Heartbeat)
	wait:
		for {
			select {
			case <-r.Context().Done():
				return
			case <-next:
				break wait
			case <-heartbeat.C:
				if !write([]byte(": keep-alive\n\n")) {
					return
				}
			}
		}
	}
}

// eventCursor is where one stream is in the engine's recent events.
type eventCursor struct {
	started bool
	lastID  string
	lastAt  int64 // Unix ms of lastID
}

// next returns the events published since the last call, newest first;
// the first call returns the last RecentEventsShown and reset.
func (c *eventCursor) next(src Source) ([]eventView, bool) {
	var evs []events.Envelope
	reset := !c.started
	if reset {
		c.started = true
		evs = src.RecentEvents(engine.EventFilter{Limit: RecentEventsShown})
	} else {
		evs = src.RecentEvents(engine.EventFilter{Since: time.UnixMilli(c.lastAt)})
		// Since is inclusive to the millisecond: skip what was sent.
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Context.ID == c.lastID {
				evs = evs[i+1:]
				break
			}
		}
		if len(evs) > RecentEventsShown {
			evs, reset = evs[len(evs)-RecentEventsShown:], true
		}
	}
	if len(evs) > 0 {
		last := evs[len(evs)-1]
		c.lastID, c.lastAt = last.Context.ID, last.Context.Timestamp
	}
	out := make([]eventView, len(evs))
	for i := range evs {
		out[len(evs)-1-i] = newEventView(evs[i])
	}
	return out, reset
}
