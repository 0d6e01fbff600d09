// Command happen-plugin-ok records every call and succeeds.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/happen-dev/happen/engine/plugins/testdata/testplugin"
	"github.com/happen-dev/happen/sdk"
)

type okAction struct{}

func (okAction) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "ok", Version: "1.2.3", Params: testplugin.Params}, nil
}

func (okAction) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if quiet, _ := req.With["quiet"].(bool); quiet {
		return &sdk.ExecuteResponse{Message: strconv.FormatInt(time.Now().UnixNano(), 10)}, nil
	}
	if echo, _ := req.With["echo"].(bool); echo {
		fmt.Fprintf(os.Stderr, "token is %v, note is %v\n", req.With["token"], req.With["note"])
	}
	if err := testplugin.Publish(ctx, "ok", "start", req, os.Getpid()); err != nil {
		return nil, err
	}
	if err := testplugin.Sleep(ctx, req); err != nil {
		return nil, err
	}
	if err := testplugin.Publish(ctx, "ok", "end", req, os.Getpid()); err != nil {
		return nil, err
	}
	return &sdk.ExecuteResponse{Message: "recorded"}, nil
}

func (a okAction) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.Execute(ctx, req)
}

func main() { sdk.Serve(okAction{}) }
