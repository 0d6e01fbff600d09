// Command happen-plugin-hang never finishes an action: it ignores its
// context and blocks until the process is killed.
package main

import (
	"context"
	"os"

	"github.com/happen-dev/happen/engine/plugins/testdata/testplugin"
	"github.com/happen-dev/happen/sdk"
)

type hangAction struct{ block chan struct{} }

func (hangAction) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "hang", Version: "0.1.0", Params: testplugin.Params}, nil
}

func (a hangAction) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if err := testplugin.Publish(ctx, "hang", "start", req, os.Getpid()); err != nil {
		return nil, err
	}
	<-a.block // never closed
	return &sdk.ExecuteResponse{}, nil
}

func (a hangAction) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.Execute(ctx, req)
}

func main() { sdk.Serve(hangAction{block: make(chan struct{})}) }
