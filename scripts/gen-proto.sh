#!/usr/bin/env bash
# Regenerates the Go code for the project's .proto files. It installs protoc and
# the Go plugins when they are missing or at the wrong version, so it can run on
# a fresh machine, and running it twice changes nothing.
set -euo pipefail

cd "$(dirname "$0")/.."

# protoc-gen-go must match the protobuf runtime the module builds against.
# protoc-gen-go-grpc is its own module with its own releases, not tagged with
# grpc's version: v1.6.2 is built against grpc v1.81 and generates code that
# needs SupportPackageIsVersion9 and generic streams, both in go.mod's grpc.
PROTOC_GEN_GO_VERSION="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
PROTOC_GEN_GO_GRPC_VERSION="${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.2}"

GOBIN="$(go env GOBIN)"
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export PATH="$GOBIN:$PATH"

if ! command -v protoc >/dev/null 2>&1; then
	echo "installing protoc (Debian package protobuf-compiler)" >&2
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler
fi

# Prints the version a plugin reports, or nothing when it is not installed.
plugin_version() {
	if [ -x "$GOBIN/$1" ]; then
		"$GOBIN/$1" --version 2>/dev/null | awk '{print $NF}'
	fi
}

if [ "$(plugin_version protoc-gen-go)" != "$PROTOC_GEN_GO_VERSION" ]; then
	echo "installing protoc-gen-go $PROTOC_GEN_GO_VERSION" >&2
	GOBIN="$GOBIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [ "v$(plugin_version protoc-gen-go-grpc)" != "$PROTOC_GEN_GO_GRPC_VERSION" ]; then
	echo "installing protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION" >&2
	GOBIN="$GOBIN" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

# Paths are given from the repository root so that each file registers under a
# unique name (pkg/echo/echopb/echo.proto, not a bare echo.proto that another
# package could also claim).
protoc \
	--proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	pkg/echo/echopb/echo.proto
