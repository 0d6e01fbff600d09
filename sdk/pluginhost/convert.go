package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/internal/pb"
	"github.com/happen-dev/happen/sdk/internal/wire"
)

func toProto(req *sdk.ExecuteRequest) (*pb.ExecuteRequest, error) {
	var with []byte
	if len(req.With) > 0 {
		var err error
		if with, err = json.Marshal(req.With); err != nil {
			// The error names the offending Go type, never a value.
			return nil, fmt.Errorf("encode the action's with parameters: %w", err)
		}
	}
	return &pb.ExecuteRequest{
		Event:          wire.ToEnvelope(req.Event),
		Down:           wire.ToEnvelope(req.Down),
		Rule:           req.Rule,
		WithJson:       with,
		Resolve:        req.Resolve,
		IdempotencyKey: req.IdempotencyKey,
	}, nil
}

// callError turns the gRPC error of a failed call into one that says what
// went wrong in the engine's terms.
func callError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("plugin did not answer in time: %w", context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("call canceled: %w", context.Canceled)
	case codes.Unknown:
		// What the plugin's own code returned, e.g. from Describe.
		return &ActionError{Message: st.Message()}
	default:
		return fmt.Errorf("plugin call failed: %s (%s)", st.Message(), st.Code())
	}
}

// hostServer serves an sdk.Host to one plugin process.
type hostServer struct {
	pb.UnimplementedHostServer
	h sdk.Host
}

func (s *hostServer) Publish(ctx context.Context, r *pb.PublishRequest) (*pb.PublishResponse, error) {
	if err := s.h.Publish(ctx, r.GetSubject(), r.GetData()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.PublishResponse{}, nil
}

func (s *hostServer) KVGet(ctx context.Context, r *pb.KVGetRequest) (*pb.KVGetResponse, error) {
	v, found, err := s.h.KVGet(ctx, r.GetBucket(), r.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.KVGetResponse{Value: v, Found: found}, nil
}

func (s *hostServer) KVPut(ctx context.Context, r *pb.KVPutRequest) (*pb.KVPutResponse, error) {
	if err := s.h.KVPut(ctx, r.GetBucket(), r.GetKey(), r.GetValue()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.KVPutResponse{}, nil
}

func (s *hostServer) KVDelete(ctx context.Context, r *pb.KVDeleteRequest) (*pb.KVDeleteResponse, error) {
	if err := s.h.KVDelete(ctx, r.GetBucket(), r.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.KVDeleteResponse{}, nil
}

func (s *hostServer) ConsumerConfig(ctx context.Context, r *pb.ConsumerConfigRequest) (*pb.ConsumerConfigResponse, error) {
	cfg, err := s.h.ConsumerConfig(ctx, r.GetStream(), r.GetConsumer())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConsumerConfigResponse{ConfigJson: cfg}, nil
}

func (s *hostServer) UpdateConsumer(ctx context.Context, r *pb.UpdateConsumerRequest) (*pb.UpdateConsumerResponse, error) {
	// Numbers stay json.Number so large integers survive the round trip.
	dec := json.NewDecoder(bytes.NewReader(r.GetPatchJson()))
	dec.UseNumber()
	var patch map[string]any
	if err := dec.Decode(&patch); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "update consumer %s/%s: decode patch: %v", r.GetStream(), r.GetConsumer(), err)
	}
	if err := s.h.UpdateConsumer(ctx, r.GetStream(), r.GetConsumer(), patch); err != nil {
		return nil, toStatus(err)
	}
	return &pb.UpdateConsumerResponse{}, nil
}

// toStatus carries a host error's text to the plugin; context errors keep
// their meaning so the plugin can tell a timeout from a refusal.
func toStatus(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	default:
		return status.Error(codes.Unknown, err.Error())
	}
}
