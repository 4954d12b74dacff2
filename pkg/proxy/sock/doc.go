// Package sock holds the data plane's socket wrappers: Raw reads and writes
// a TCP connection with raw system calls, and Spill keeps a peer that stops
// reading from blocking the goroutine that writes to it.
package sock
