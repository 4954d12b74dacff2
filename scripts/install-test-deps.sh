#!/usr/bin/env bash
# Installs the tools that some tests compare albctl against, when they are missing:
#   dig     (Debian package dnsutils)   queries albctl's DNS server as a real client
#   bash-completion (Debian package)    what the generated bash completion runs on in a shell
#   openssl (Debian package)            s_client, a TLS client other than Go's, against TLS policies
#   etcd    (Debian package etcd-server) an etcd server older than the one embedded in the tests
#   chromium (Debian package)           the headless browser that loads the gRPC-Web demo page
#   grpcurl (from the Go module proxy)  the reference the probe's output is compared with
#   h2spec  (from the Go module proxy)  the HTTP/2 conformance tester run against the proxy
# Running it again changes nothing. Where a tool cannot be installed it says so, and the tests
# that need it skip (TestH2spec, TestTLSPolicyOpenSSL, TestDebianEtcdServer and
# TestDemoPageInChromium fail instead when CI is set). Debian's etcd-server is only installed:
# its service is not started here.
set -uo pipefail

GRPCURL_VERSION=v1.9.4
# h2spec's module has no go.mod; v2.2.1+incompatible reports itself as version 2.0.0.
H2SPEC_VERSION=v2.2.1+incompatible
H2SPEC_REPORTS=2.0.0
gobin="$(go env GOPATH)/bin"

# Debian packages, by the file each provides.
missing=()
command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
	echo "dig, bash-completion, openssl, etcd and chromium: present"
elif command -v apt-get >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		echo "installed: ${missing[*]}"
	else
		echo "warning: could not install ${missing[*]}; the tests that use them will skip" >&2
	fi
else
	echo "warning: ${missing[*]} missing and apt-get is not available; the tests that use them will skip" >&2
fi

if "$gobin/grpcurl" -version 2>&1 | grep -q "${GRPCURL_VERSION#v}"; then
	echo "grpcurl: $gobin/grpcurl"
elif (cd / && GOFLAGS= go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"); then
	echo "grpcurl: $gobin/grpcurl"
else
	echo "warning: could not install grpcurl; the probe's comparison tests will skip" >&2
fi

if "$gobin/h2spec" --version 2>&1 | grep -q "Version: $H2SPEC_REPORTS "; then
	echo "h2spec: $gobin/h2spec"
elif (cd / && GOFLAGS= go install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"); then
	echo "h2spec: $gobin/h2spec"
else
	echo "warning: could not install h2spec; TestH2spec will skip (and fail where CI is set)" >&2
fi
exit 0
