//go:build tools

// Package tools pins dependencies that packages still under construction will import,
// so that `go mod tidy` keeps them. Remove an import here once real code uses it.
package tools

import (
	_ "github.com/fullstorydev/grpcurl"
	_ "github.com/gofrs/flock"
	_ "github.com/jhump/protoreflect/grpcreflect"
	_ "github.com/miekg/dns"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/cobra/doc"
	_ "github.com/spf13/viper"
	_ "golang.org/x/net/http2"
	_ "google.golang.org/grpc"
	_ "sigs.k8s.io/yaml"
)
