package serve

import "os"

// notifyReopen does nothing: Windows has no SIGUSR1, and its files cannot be renamed while open.
func notifyReopen(chan<- os.Signal) {}
