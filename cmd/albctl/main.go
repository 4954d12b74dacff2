// Command albctl runs a gRPC-aware application load balancer on one machine.
package main

import (
	"context"
	"os"

	"github.com/albctl/albctl/pkg/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
