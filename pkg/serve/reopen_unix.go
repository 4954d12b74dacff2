//go:build !windows

package serve

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReopen sends SIGUSR1, the signal that asks for the access log file to be reopened, to c.
func notifyReopen(c chan<- os.Signal) { signal.Notify(c, syscall.SIGUSR1) }
