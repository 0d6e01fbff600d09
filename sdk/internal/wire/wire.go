// Package wire holds what both ends of the plugin protocol must agree on:
// the go-plugin handshake, the protocol version and the conversion of
// events to and from their protobuf form.
package wire

import (
	"fmt"
	"strconv"

	"github.com/happen-dev/happen/sdk/events"
	"github.com/happen-dev/happen/sdk/internal/pb"
)

// ProtocolVersion is the plugin protocol this code speaks. Raise it with any
// change to plugin.proto that an older peer would misread.
const ProtocolVersion = 1

// The magic cookie only tells a plugin it was started by happen, so that
// running it by hand prints a hint instead of hanging; it is no secret.
const (
	MagicCookieKey   = "HAPPEN_PLUGIN_MAGIC_COOKIE"
	MagicCookieValue = "7d4f3c1e-happen-flow-balance-plugin"
)

// PluginName is the single plugin type a happen plugin process serves.
const PluginName = "action"

// servedVersion, when set at link time with
// -ldflags "-X github.com/happen-dev/happen/sdk/internal/wire.servedVersion=N",
// makes Serve announce protocol version N instead of ProtocolVersion. It
// exists to build plugins that speak another version, to test how the engine
// refuses them; nothing assigns it at run time.
var servedVersion string

// ServedVersion is the protocol version a plugin built from this code
// announces.
func ServedVersion() (int, error) {
	if servedVersion == "" {
		return ProtocolVersion, nil
	}
	v, err := strconv.Atoi(servedVersion)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("sdk: protocol version %q set at link time is not a positive integer", servedVersion)
	}
	return v, nil
}

// ToEnvelope converts an event to its wire form.
func ToEnvelope(e events.Envelope) *pb.Envelope {
	return &pb.Envelope{
		Type:    e.Type,
		Payload: e.Payload,
		Context: &pb.EventContext{
			Id:            e.Context.ID,
			Timestamp:     e.Context.Timestamp,
			Sender:        e.Context.Sender,
			CausationId:   e.Context.CausationID,
			CorrelationId: e.Context.CorrelationID,
		},
	}
}

// FromEnvelope converts an event from its wire form; nil gives the zero
// envelope.
func FromEnvelope(e *pb.Envelope) events.Envelope {
	if e == nil {
		return events.Envelope{}
	}
	c := e.GetContext()
	return events.Envelope{
		Type:    e.GetType(),
		Payload: e.GetPayload(),
		Context: events.Context{
			ID:            c.GetId(),
			Timestamp:     c.GetTimestamp(),
			Sender:        c.GetSender(),
			CausationID:   c.GetCausationId(),
			CorrelationID: c.GetCorrelationId(),
		},
	}
}
