// Command hostcall is the plugin the pluginhost tests drive: with.op picks
// what it does, mostly calls on the host, and it answers with what it saw.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/happen-dev/happen/sdk"
)

type hostcall struct {
	// early writes to the process's standard error as it was before Serve.
	early *slog.Logger
}

func (hostcall) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "hostcall", Version: "9.8.7", Params: []sdk.Param{
		{Name: "op", Description: "what to do", Required: true},
		{Name: "subject"}, {Name: "bucket"}, {Name: "stream"}, {Name: "consumer"},
		{Name: "token", Secret: true},
	}}, nil
}

// Seen is what the echo op answers.
type Seen struct {
	Event          json.RawMessage `json:"event"`
	Down           json.RawMessage `json:"down"`
	Rule           string          `json:"rule"`
	With           map[string]any  `json:"with"`
	Resolve        bool            `json:"resolve"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Method         string          `json:"method"`
}

func (a hostcall) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.do(ctx, "Execute", req)
}

func (a hostcall) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.do(ctx, "Undo", req)
}

func str(req *sdk.ExecuteRequest, k string) string {
	s, _ := req.With[k].(string)
	return s
}

func (a hostcall) do(ctx context.Context, method string, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	h := req.Host
	switch op := str(req, "op"); op {
	case "echo":
		ev, _ := json.Marshal(req.Event)
		down, _ := json.Marshal(req.Down)
		out, err := json.Marshal(Seen{ev, down, req.Rule, req.With, req.Resolve, req.IdempotencyKey, method})
		return &sdk.ExecuteResponse{Message: string(out)}, err
	case "publish":
		return &sdk.ExecuteResponse{Message: "published"}, h.Publish(ctx, str(req, "subject"), []byte("hello"))
	case "kv":
		b, k := str(req, "bucket"), "the-key"
		var steps []string
		_, found, err := h.KVGet(ctx, b, k)
		if err != nil {
			return nil, fmt.Errorf("first get: %w", err)
		}
		steps = append(steps, fmt.Sprintf("found=%v", found))
		if err := h.KVPut(ctx, b, k, []byte("v1")); err != nil {
			return nil, fmt.Errorf("put: %w", err)
		}
		v, found, err := h.KVGet(ctx, b, k)
		if err != nil {
			return nil, fmt.Errorf("second get: %w", err)
		}
		steps = append(steps, fmt.Sprintf("found=%v value=%s", found, v))
		if err := h.KVDelete(ctx, b, k); err != nil {
			return nil, fmt.Errorf("delete: %w", err)
		}
		_, found, err = h.KVGet(ctx, b, k)
		if err != nil {
			return nil, fmt.Errorf("third get: %w", err)
		}
		steps = append(steps, fmt.Sprintf("found=%v", found))
		out, _ := json.Marshal(steps)
		return &sdk.ExecuteResponse{Message: string(out)}, nil
	case "consumer":
		s, c := str(req, "stream"), str(req, "consumer")
		if err := h.UpdateConsumer(ctx, s, c, map[string]any{"max_ack_pending": 7}); err != nil {
			return nil, err
		}
		raw, err := h.ConsumerConfig(ctx, s, c)
		if err != nil {
			return nil, err
		}
		var cfg struct {
			MaxAckPending int `json:"max_ack_pending"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, err
		}
		return &sdk.ExecuteResponse{Message: fmt.Sprint(cfg.MaxAckPending)}, nil
	case "hosterr":
		// The host refuses an empty subject; its error comes back as is.
		err := h.Publish(ctx, "", nil)
		if err == nil {
			return nil, errors.New("the host accepted an empty subject")
		}
		return &sdk.ExecuteResponse{Message: err.Error()}, nil
	case "panic":
		panic("boom")
	case "permanent":
		return nil, sdk.Permanent(errors.New("nothing to retry"))
	case "fail":
		return nil, errors.New("transient trouble")
	case "log":
		// After Serve, os.Stderr is go-plugin's pipe to the engine.
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Warn("late warning", "token", str(req, "token"), "n", 3)
		a.early.Error("early error", "where", "before Serve")
		fmt.Fprintln(os.Stderr, "a plain line with", str(req, "token"))
		return &sdk.ExecuteResponse{Message: "logged"}, nil
	case "exit":
		os.Exit(4)
		return nil, nil
	default:
		return nil, fmt.Errorf("unknown op %q", op)
	}
}

func main() {
	sdk.Serve(hostcall{early: slog.New(slog.NewJSONHandler(os.Stderr, nil))})
}
