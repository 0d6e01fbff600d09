// Command happen-plugin-crash exits in the middle of its first action (the
// one that finds no marker file) and succeeds afterwards.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/happen-dev/happen/engine/plugins/testdata/testplugin"
	"github.com/happen-dev/happen/sdk"
)

type crashAction struct{}

func (crashAction) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "crash", Version: "0.1.0", Params: testplugin.Params}, nil
}

func (crashAction) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if err := testplugin.Publish(ctx, "crash", "start", req, os.Getpid()); err != nil {
		return nil, err
	}
	marker, _ := req.With["marker"].(string)
	if marker == "" {
		return nil, errors.New("no marker")
	}
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(marker, []byte("crashed"), 0o600); err != nil {
			return nil, err
		}
		os.Exit(3)
	}
	if err := testplugin.Publish(ctx, "crash", "end", req, os.Getpid()); err != nil {
		return nil, err
	}
	return &sdk.ExecuteResponse{Message: "survived"}, nil
}

func (a crashAction) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.Execute(ctx, req)
}

func main() { sdk.Serve(crashAction{}) }
