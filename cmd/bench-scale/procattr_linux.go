package main

import "syscall"

// engineProcAttr puts the engine in its own process group, so a Ctrl-C
// reaches only this program, which stops the engine in order; and has the
// kernel stop the engine if this program dies first.
func engineProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
