// Package pb is the generated Go code of plugin.proto, the wire protocol
// between the engine and its plugins. Only the sdk packages use it; they
// convert to and from the plain Go types of package sdk.
package pb
