// Package e2e runs the built-in plugins as the engine does: each built as
// its own executable, started over the plugin protocol, acting on a real
// JetStream server through the engine's host. Its tests are its content.
package e2e
