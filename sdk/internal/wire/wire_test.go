package wire

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/happen-dev/happen/sdk/events"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []events.Envelope{
		{},
		{
			Type:    events.TypeNodeDown,
			Payload: json.RawMessage(`{"nodeId":"n"}`),
			Context: events.Context{ID: "i", Timestamp: 1, Sender: "s", CausationID: "c", CorrelationID: "k"},
		},
	} {
		got := FromEnvelope(ToEnvelope(e))
		if len(e.Payload) == 0 {
			got.Payload = nil // proto has no nil/empty distinction
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %+v gave %+v", e, got)
		}
	}
	if !reflect.DeepEqual(FromEnvelope(nil), events.Envelope{}) {
		t.Fatal("nil envelope is not the zero one")
	}
}

func TestServedVersion(t *testing.T) {
	// Without a link-time override, a plugin speaks this code's version.
	if v, err := ServedVersion(); err != nil || v != ProtocolVersion {
		t.Fatalf("ServedVersion = %d, %v", v, err)
	}
}
