#!/usr/bin/env bash
# Checks .goreleaser.yaml and makes a snapshot release in dist/, installing goreleaser from the
# Go module proxy when it is missing. With --check-only, skips the snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
# The newest goreleaser whose dependencies all install here with Go 1.26.
GORELEASER_VERSION=v2.16.0
gobin="$(go env GOPATH)/bin"
if ! "$gobin/goreleaser" --version 2>/dev/null | grep -q "${GORELEASER_VERSION#v}"; then
  echo "installing goreleaser $GORELEASER_VERSION" >&2
  GOFLAGS= go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION"
fi
"$gobin/goreleaser" check
if [[ "${1:-}" != "--check-only" ]]; then
  "$gobin/goreleaser" release --snapshot --clean
  # Every archive must hold the binary, the completions, the man pages, README and LICENSE.
  for archive in dist/*.tar.gz; do
    listing=$(tar -tzf "$archive")
    for want in albctl README.md LICENSE completions/albctl.bash completions/albctl.zsh completions/albctl.fish completions/albctl.ps1 docs/man/albctl.1; do
      grep -qx "$want" <<<"$listing" || { echo "$archive lacks $want" >&2; exit 1; }
    done
  done
  echo "snapshot archives: $(ls dist/*.tar.gz dist/*.zip | wc -l), each with binary, completions, man pages, README and LICENSE"
fi
