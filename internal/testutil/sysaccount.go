package testutil

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Users of WithSystemAccount's servers: AppUser in the JetStream account
// APP, SysUser in the system account SYS (password = user name).
const (
	AppUser = "app"
	SysUser = "sys"
)

// WithSystemAccount is a RunServer / RunCluster option: the server has an
// application account APP with JetStream and a system account SYS, each
// with one user, as a deployment that grants the engine system access.
// JetStream per account can only be enabled through the configuration
// language, so that is what it uses.
func WithSystemAccount(opts *server.Options) {
	conf := fmt.Sprintf(`accounts {
  APP { jetstream: enabled, users: [ {user: %q, password: %q} ] }
  SYS { users: [ {user: %q, password: %q} ] }
}
system_account: SYS
`, AppUser, AppUser, SysUser, SysUser)
	if err := opts.ProcessConfigString(conf); err != nil {
		panic(fmt.Sprintf("system account configuration: %v", err)) // a fixed string: a bug here, not bad input
	}
}

// As logs in as one of WithSystemAccount's users.
func As(user string) nats.Option { return nats.UserInfo(user, user) }
