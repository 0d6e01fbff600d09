// Command happen-plugin-alerting is the built-in alerting action: it POSTs
// each incident to a webhook as the event envelope, a Slack message or
// Alertmanager v2 alerts, with retries, and sends the resolve when the
// incident ends.
package main

import "github.com/happen-dev/happen/sdk"

// Set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { sdk.Serve(New(version)) }
