#!/usr/bin/env bash
# Runs albctl's tests with the race detector. The tools that some tests compare against (dig,
# grpcurl) are installed first by scripts/install-test-deps.sh; tests that need a missing tool
# say so and skip.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
export PATH="$(go env GOPATH)/bin:$PATH"
go test -race -count=1 -timeout 15m ./... "$@"
