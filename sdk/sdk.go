// Package sdk is everything a happen plugin author imports. A plugin is an
// executable named happen-plugin-<name> whose main calls Serve with a value
// implementing Action; the handshake, gRPC and the host connection stay
// inside this package.
//
//	func main() { sdk.Serve(myAction{}) }
//
// Plugins act on NATS only through the Host the engine passes with each
// request, so they need no credentials of their own and can do only what
// the engine's connection may.
package sdk

import (
	"context"
	"encoding/json"

	"github.com/happen-dev/happen/sdk/events"
)

// Action is what a plugin implements.
type Action interface {
	// Describe names the plugin and the `with` parameters it accepts.
	Describe(ctx context.Context, req *DescribeRequest) (*DescribeResponse, error)
	// Execute acts when a rule fires.
	Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error)
	// Undo reverses Execute when the incident ends (req.Resolve is true).
	Undo(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error)
}

// DescribeRequest is empty today; fields may be added.
type DescribeRequest struct{}

// DescribeResponse describes a plugin.
type DescribeResponse struct {
	Name    string
	Version string
	Params  []Param
}

// Param is one `with` parameter a plugin accepts.
type Param struct {
	Name        string
	Description string
	Required    bool
	// Secret values are never logged by the engine.
	Secret bool
}

// ExecuteRequest is one action to run.
type ExecuteRequest struct {
	// Event is the node.down or system.down on fire, the node.up or
	// system.up on resolve.
	Event events.Envelope
	// Down is the down event of the incident (equal to Event on fire).
	Down events.Envelope
	// Rule is the name of the rule that fired.
	Rule string
	// With holds the rule's parameters, ${env:..} and ${file:..} expanded.
	With map[string]any
	// Resolve is true when the incident has ended.
	Resolve bool
	// IdempotencyKey is the same for every attempt of one action: a retry
	// after a crash or timeout carries the key of the attempt it repeats.
	IdempotencyKey string
	// Host lets the plugin act on NATS through the engine.
	Host Host
}

// ExecuteResponse reports what an action did.
type ExecuteResponse struct {
	Message string
}

// Host is the engine's NATS connection, lent to a plugin for one request.
type Host interface {
	Publish(ctx context.Context, subject string, data []byte) error
	// KVGet returns found=false when the bucket or key does not exist.
	KVGet(ctx context.Context, bucket, key string) (value []byte, found bool, err error)
	// KVPut creates the bucket when it does not exist.
	KVPut(ctx context.Context, bucket, key string, value []byte) error
	KVDelete(ctx context.Context, bucket, key string) error
	// ConsumerConfig is the consumer's configuration as JetStream reports it
	// (JSON with JetStream's field names, e.g. "max_ack_pending").
	ConsumerConfig(ctx context.Context, stream, consumer string) (json.RawMessage, error)
	// UpdateConsumer replaces the fields present in patch (JetStream's field
	// names) in the consumer's configuration.
	UpdateConsumer(ctx context.Context, stream, consumer string, patch map[string]any) error
}
