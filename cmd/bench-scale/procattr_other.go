//go:build !linux

package main

import "syscall"

// engineProcAttr: elsewhere the engine shares this program's process group;
// the measurements need Linux's /proc anyway.
func engineProcAttr() *syscall.SysProcAttr { return nil }
