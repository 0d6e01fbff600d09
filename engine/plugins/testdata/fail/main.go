// Command happen-plugin-fail records every call and returns an error that
// quotes its token, permanent when with.permanent is true.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/happen-dev/happen/engine/plugins/testdata/testplugin"
	"github.com/happen-dev/happen/sdk"
)

type failAction struct{}

func (failAction) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "fail", Version: "0.1.0", Params: testplugin.Params}, nil
}

func (failAction) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if err := testplugin.Publish(ctx, "fail", "start", req, os.Getpid()); err != nil {
		return nil, err
	}
	err := fmt.Errorf("webhook refused token %v", req.With["token"])
	if p, _ := req.With["permanent"].(bool); p {
		return nil, sdk.Permanent(err)
	}
	return nil, err
}

func (a failAction) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	return a.Execute(ctx, req)
}

func main() { sdk.Serve(failAction{}) }
