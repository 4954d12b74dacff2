#!/usr/bin/env bash
# Regenerates the command reference (docs/reference), the man pages (docs/man) and the shell
# completions (completions/) from the commands themselves, and the demo page's bundle when its
# inputs changed (that needs npm). With --check, fails if the checked-in files differ from what
# the code generates; the bundle's check needs no npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--check" ]]; then
  scripts/bundle-page.sh --check
else
  scripts/bundle-page.sh --if-stale
fi
go run ./scripts/gendocs
if [[ "${1:-}" == "--check" ]]; then
  if ! git diff --quiet -- docs/reference docs/man completions || [[ -n "$(git status --porcelain -- docs/reference docs/man completions)" ]]; then
    git status --short -- docs/reference docs/man completions
    echo "generated files are stale: run scripts/gen.sh and commit the result" >&2
    exit 1
  fi
fi
