#!/usr/bin/env bash
# Bundles the demo page's script (pkg/demopage/page) into pkg/demopage/static/demo.js with
# esbuild, from the packages package-lock.json pins. The bundle's first line holds a sha256 of
# its inputs, so that staleness can be seen without npm:
#   scripts/bundle-page.sh             npm ci and bundle
#   scripts/bundle-page.sh --check     fail if the bundle's inputs changed since it was built
#   scripts/bundle-page.sh --if-stale  bundle only when --check would fail
set -euo pipefail
cd "$(dirname "$0")/.."
page=pkg/demopage/page
bundle=pkg/demopage/static/demo.js

inputs_hash() {
	{ echo scripts/bundle-page.sh; echo "$page/package.json"; echo "$page/package-lock.json"; echo "$page/.npmrc"; find "$page/src" -type f; } |
		LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}
header="// albctl demo page, inputs sha256 $(inputs_hash)"
# esbuild drops the licence comment of the code it minifies, so the bundle names it itself.
footer="// Includes grpc-web and the Closure Library, both Apache-2.0: https://www.apache.org/licenses/LICENSE-2.0"
fresh() { [[ -f "$bundle" ]] && [[ "$(head -n1 "$bundle")" == "$header" ]]; }

case "${1:-}" in
--check)
	if ! fresh; then
		echo "$bundle is stale: run scripts/bundle-page.sh and commit the result" >&2
		exit 1
	fi
	exit 0
	;;
--if-stale)
	fresh && exit 0
	;;
"") ;;
*)
	echo "usage: scripts/bundle-page.sh [--check|--if-stale]" >&2
	exit 2
	;;
esac

# esbuild's install script only checks its binary, which the optional @esbuild/* package holds.
(cd "$page" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
"$page/node_modules/.bin/esbuild" "$page/src/main.js" --bundle --minify --format=iife \
	--target=es2020 --platform=browser --log-level=warning \
	--banner:js="$header" --footer:js="$footer" --outfile="$bundle"
echo "$bundle: $(wc -c <"$bundle") bytes"
