// Command happen-plugin-partition-mode is the built-in partition-mode
// action: when a group of nodes is cut off it publishes the partition mode
// on happen.control.partition and keeps it in the JetStream KV bucket
// happen_modes under the key partition, so a node that (re)connects can read
// it; when the incident ends it publishes and stores "active": false.
package main

import "github.com/happen-dev/happen/sdk"

// Set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { sdk.Serve(New(version)) }
