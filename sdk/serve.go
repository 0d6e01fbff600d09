package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/happen-dev/happen/sdk/internal/pb"
	"github.com/happen-dev/happen/sdk/internal/wire"
)

// ServeOption adjusts Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	logger *slog.Logger
}

// WithLogger sets where the SDK reports its own trouble, such as a panic it
// recovered from in an Action method. The default writes JSON lines to
// standard error, which the engine records under the plugin's name.
func WithLogger(l *slog.Logger) ServeOption {
	return func(c *serveConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// Serve runs a as a happen plugin until the engine stops it. It speaks the
// go-plugin handshake and gRPC protocol and never returns control to a
// plugin's own code except through a's methods; main should call nothing
// after it. Started by hand rather than by the engine, it prints a hint and
// exits with status 1.
func Serve(a Action, opts ...ServeOption) {
	cfg := serveConfig{
		// os.Stderr is read now: go-plugin later replaces it with a pipe.
		logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	version, err := wire.ServedVersion()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go exitWithParent(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			MagicCookieKey:   wire.MagicCookieKey,
			MagicCookieValue: wire.MagicCookieValue,
		},
		VersionedPlugins: map[int]plugin.PluginSet{
			version: {wire.PluginName: &grpcPlugin{impl: a, log: cfg.logger}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		// go-plugin's own chatter stays out of the engine's log unless it
		// matters.
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "go-plugin",
			Output:     os.Stderr,
			Level:      hclog.Warn,
			JSONFormat: true,
		}),
	})
}

// exitWithParent ends the plugin once the engine that started it is gone.
// An engine that stops stops its plugins; one that is killed outright
// (SIGKILL, out of memory) cannot, and its plugins, re-parented, would
// otherwise run on with no one to serve. Where the parent id never changes
// (Windows), this does nothing.
func exitWithParent(ppid int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			os.Exit(0)
		}
	}
}

// grpcPlugin is the plugin side of go-plugin's GRPCPlugin: it serves an
// Action. The engine's side is package sdk/client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Action
	log  *slog.Logger
}

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterActionServer(s, newActionServer(p.impl, broker, p.log))
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: a plugin serves actions and dispenses no client")
}

// actionServer adapts an Action to the gRPC service.
type actionServer struct {
	pb.UnimplementedActionServer
	impl   Action
	broker *plugin.GRPCBroker
	log    *slog.Logger

	mu   sync.Mutex
	host Host
	conn io.Closer
}

func newActionServer(impl Action, broker *plugin.GRPCBroker, log *slog.Logger) *actionServer {
	return &actionServer{impl: impl, broker: broker, log: log, host: unconnectedHost{}}
}

func (s *actionServer) Connect(_ context.Context, req *pb.ConnectRequest) (*pb.ConnectResponse, error) {
	conn, err := s.broker.Dial(req.GetHostBrokerId())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial the engine's host service: %v", err)
	}
	s.mu.Lock()
	old := s.conn
	s.host, s.conn = &hostClient{c: pb.NewHostClient(conn)}, conn
	s.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return &pb.ConnectResponse{}, nil
}

func (s *actionServer) currentHost() Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

func (s *actionServer) Describe(ctx context.Context, _ *pb.DescribeRequest) (resp *pb.DescribeResponse, err error) {
	defer s.recoverTo("Describe", &err)
	d, err := s.impl.Describe(ctx, &DescribeRequest{})
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	if d == nil {
		return nil, status.Error(codes.Unknown, "Describe returned no description")
	}
	out := &pb.DescribeResponse{Name: d.Name, Version: d.Version}
	for _, p := range d.Params {
		out.Params = append(out.Params, &pb.Param{
			Name: p.Name, Description: p.Description, Required: p.Required, Secret: p.Secret,
		})
	}
	return out, nil
}

func (s *actionServer) Execute(ctx context.Context, req *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	return s.run(ctx, "Execute", s.impl.Execute, req)
}

func (s *actionServer) Undo(ctx context.Context, req *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	return s.run(ctx, "Undo", s.impl.Undo, req)
}

type actionFunc func(context.Context, *ExecuteRequest) (*ExecuteResponse, error)

func (s *actionServer) run(ctx context.Context, method string, f actionFunc, req *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	in, err := s.fromProto(req)
	if err != nil {
		return &pb.ExecuteResponse{Error: err.Error(), Permanent: true}, nil
	}
	resp, err := s.call(ctx, method, f, in)
	if err != nil {
		return &pb.ExecuteResponse{Error: err.Error(), Permanent: IsPermanent(err)}, nil
	}
	out := &pb.ExecuteResponse{}
	if resp != nil {
		out.Message = resp.Message
	}
	return out, nil
}

// call runs f and turns a panic into an error, so that one bad request
// does not take the plugin's other actions down with it.
func (s *actionServer) call(ctx context.Context, method string, f actionFunc, req *ExecuteRequest) (resp *ExecuteResponse, err error) {
	defer s.recoverTo(method, &err)
	return f(ctx, req)
}

func (s *actionServer) recoverTo(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("plugin panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("%s panicked: %v", method, r)
	}
}

func (s *actionServer) fromProto(req *pb.ExecuteRequest) (*ExecuteRequest, error) {
	var with map[string]any
	if len(req.GetWithJson()) > 0 {
		if err := json.Unmarshal(req.GetWithJson(), &with); err != nil {
			return nil, fmt.Errorf("decode the action's with parameters: %w", err)
		}
	}
	return &ExecuteRequest{
		Event:          wire.FromEnvelope(req.GetEvent()),
		Down:           wire.FromEnvelope(req.GetDown()),
		Rule:           req.GetRule(),
		With:           with,
		Resolve:        req.GetResolve(),
		IdempotencyKey: req.GetIdempotencyKey(),
		Host:           s.currentHost(),
	}, nil
}

// hostClient is the Host a plugin gets: every call goes back to the engine.
type hostClient struct{ c pb.HostClient }

func (h *hostClient) Publish(ctx context.Context, subject string, data []byte) error {
	_, err := h.c.Publish(ctx, &pb.PublishRequest{Subject: subject, Data: data})
	return hostError("publish", err)
}

func (h *hostClient) KVGet(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	r, err := h.c.KVGet(ctx, &pb.KVGetRequest{Bucket: bucket, Key: key})
	if err != nil {
		return nil, false, hostError("kv get", err)
	}
	return r.GetValue(), r.GetFound(), nil
}

func (h *hostClient) KVPut(ctx context.Context, bucket, key string, value []byte) error {
	_, err := h.c.KVPut(ctx, &pb.KVPutRequest{Bucket: bucket, Key: key, Value: value})
	return hostError("kv put", err)
}

func (h *hostClient) KVDelete(ctx context.Context, bucket, key string) error {
	_, err := h.c.KVDelete(ctx, &pb.KVDeleteRequest{Bucket: bucket, Key: key})
	return hostError("kv delete", err)
}

func (h *hostClient) ConsumerConfig(ctx context.Context, stream, consumer string) (json.RawMessage, error) {
	r, err := h.c.ConsumerConfig(ctx, &pb.ConsumerConfigRequest{Stream: stream, Consumer: consumer})
	if err != nil {
		return nil, hostError("consumer config", err)
	}
	return json.RawMessage(r.GetConfigJson()), nil
}

func (h *hostClient) UpdateConsumer(ctx context.Context, stream, consumer string, patch map[string]any) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("update consumer %s/%s: encode patch: %w", stream, consumer, err)
	}
	_, err = h.c.UpdateConsumer(ctx, &pb.UpdateConsumerRequest{Stream: stream, Consumer: consumer, PatchJson: data})
	return hostError("update consumer", err)
}

// hostError turns a gRPC status back into the engine's error text, and
// deadlines and cancellations back into the context errors a caller tests
// for with errors.Is.
func hostError(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("host %s: %w", op, err)
	}
	switch st.Code() {
	case codes.Unknown:
		return errors.New(st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("host %s: %s: %w", op, st.Message(), context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("host %s: %s: %w", op, st.Message(), context.Canceled)
	default:
		return fmt.Errorf("host %s: %s (%s)", op, st.Message(), st.Code())
	}
}

// unconnectedHost answers while the engine has not yet handed over its host
// service, which only a plugin driven outside the engine ever sees.
type unconnectedHost struct{}

var errNoHost = errors.New("the engine's host service is not connected")

func (unconnectedHost) Publish(context.Context, string, []byte) error { return errNoHost }
func (unconnectedHost) KVGet(context.Context, string, string) ([]byte, bool, error) {
	return nil, false, errNoHost
}
func (unconnectedHost) KVPut(context.Context, string, string, []byte) error { return errNoHost }
func (unconnectedHost) KVDelete(context.Context, string, string) error      { return errNoHost }
func (unconnectedHost) ConsumerConfig(context.Context, string, string) (json.RawMessage, error) {
	return nil, errNoHost
}
func (unconnectedHost) UpdateConsumer(context.Context, string, string, map[string]any) error {
	return errNoHost
}
