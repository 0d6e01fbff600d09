// Command happen-plugin-backpressure is the built-in backpressure action:
// when a node falls behind it publishes a throttle directive on
// happen.control.backpressure.<nodeId>, with a rate derived from the node's
// ack rate, and can lower the node's consumer MaxAckPending; when the
// incident ends it publishes a release and restores MaxAckPending.
package main

import "github.com/happen-dev/happen/sdk"

// Set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { sdk.Serve(New(version)) }
