#!/usr/bin/env bash
# bench.sh runs the same gRPC loads against an echo backend directly, through
# albctl serve, through albctl serve with 100 forwarding rules, through nginx
# and through HAProxy, all on 127.0.0.1, with two clients, and prints one
# table: calls/s, p50, p99, errors and the proxy's CPU microseconds per call,
# medians of interleaved rounds, with albctl's ratios to the others and
# whether albctl meets its goals against HAProxy and against itself with rules.
#
# Clients:
#   grpc-go  scripts/bench/grpcload, a load generator on grpc-go (the version
#            in go.mod) with its default client settings: BDP estimation and
#            its pings, dynamic flow-control windows and the window updates
#            grpc-go sends, TLS verified against the listener's certificate,
#            a deadline on every call. This is how real Go clients use the
#            proxy, and what the goal is judged on. Its errors are calls that
#            did not end with status OK and every response whole.
#   h2load   nghttp2's h2load with a fixed request body: large windows, no
#            pings and few window updates, so it shows the proxy's bare
#            forwarding cost; kept for comparison with earlier runs. It does
#            not read grpc-status: its errors are responses other than HTTP
#            200 and streams that did not finish.
# Workloads (every message carries a 1000-byte payload; a call is a whole RPC):
#   unary-c50    unary calls, 50 in flight over 2 connections
#   unary-c1     unary calls one at a time over 1 connection (latency)
#   bidi-c10     bidirectional streams sending 10 messages, half-closing and
#                reading the 10 replies; 10 streams in flight on 1 connection
#   sstream-c10  server-streaming calls of 100 replies each, 10 in flight on
#                1 connection
#
# Why a load generator of our own rather than ghz: ghz v0.93.0 builds with
# this Go and would find the service by the echo server's reflection, but it
# pins grpc-go v1.34.0 (2020), so it would measure the flow control, BDP
# pings and write batching of a grpc-go five years older than the clients
# albctl serves, and it encodes and decodes every message as a dynamic
# message (protoreflect), which costs client CPU that, on a small machine,
# the proxy then lacks. grpcload uses the generated echopb stubs and the
# grpc-go this module builds with.
# It also measures exactly what the table needs: it warms up first (TLS
# handshakes, BDP ramp-up, nginx's upstream keepalive pool), then counts only
# the calls that complete inside the measured window, and reads the proxy's
# CPU from /proc at the window's edges itself, so neither start-up nor
# draining falls into calls/s or CPU per call. Its settings (GOMAXPROCS, in
# flight, connections, warm-up, window) are the same for every target; only
# direct calls go without TLS, as the backends have none. It runs on the
# same cores as the proxy, so absolute numbers are lower than on a larger
# machine; the ratios are what to compare.
#
# The echo service already does each workload: ServerStreamingEcho sends
# `count` replies that each echo the request's payload, so a request with
# count 100 and a 1000-byte payload gets 100 replies of ~1 KiB.
#
# albctl serve runs with its defaults, the text access log on stderr
# included; its stderr goes to a file in the work directory. The "rules"
# target is a second listener of the same serve with 100 rules, each a path
# and a header condition, of which the calls meet only the last: the cost of
# matching, compared with the listener without rules. nginx and
# HAProxy run with their access logs off (scripts/bench/).
#
# Installs h2load (nghttp2-client), nginx and haproxy from Debian's packages
# when they are missing. Settings (environment):
#   BENCH_DURATION   seconds measured per run (default 2.5)
#   BENCH_WARMUP     seconds of grpc-go load before each measured window
#                    (default 0.5)
#   BENCH_ROUNDS     interleaved rounds (default 3)
#   BENCH_CLIENTS    clients to run, in order (default "grpc-go h2load")
#   BENCH_WORKLOADS  workloads to run (default all four, as listed above)
#   BENCH_TARGETS    targets to run (default "direct albctl rules nginx haproxy")
#   BENCH_PORT_BASE  first of 7 consecutive ports on 127.0.0.1 (default 19400)
#   BENCH_KEEP=1     keep the work directory (logs, configs, raw results)
# With the defaults a run takes about five minutes; progress goes to stderr.
set -euo pipefail

cd "$(dirname "$0")/.."
duration=${BENCH_DURATION:-2.5}
warmup=${BENCH_WARMUP:-0.5}
rounds=${BENCH_ROUNDS:-3}
read -r -a clients <<<"${BENCH_CLIENTS:-grpc-go h2load}"
read -r -a workloads <<<"${BENCH_WORKLOADS:-unary-c50 unary-c1 bidi-c10 sstream-c10}"
read -r -a targets <<<"${BENCH_TARGETS:-direct albctl rules nginx haproxy}"
base=${BENCH_PORT_BASE:-19400}
backend1=$base backend2=$((base + 1)) port_albctl=$((base + 2)) port_nginx=$((base + 3))
port_haproxy=$((base + 4)) port_admin=$((base + 5)) port_rules=$((base + 6))
# ms SECONDS: whole milliseconds, as both clients take them.
ms() {
	awk -v s="$1" 'BEGIN { if (s !~ /^[0-9]*\.?[0-9]+$/) exit 1; printf "%d", s * 1000 }' || {
		echo "bench: bad number of seconds: $1" >&2
		exit 2
	}
}
duration_ms=$(ms "$duration")
warmup_ms=$(ms "$warmup")
((duration_ms > 0)) || {
	echo "bench: BENCH_DURATION must be positive" >&2
	exit 2
}
for c in "${clients[@]}"; do
	[[ $c == grpc-go || $c == h2load ]] || {
		echo "bench: unknown client $c in BENCH_CLIENTS (grpc-go, h2load)" >&2
		exit 2
	}
done
for w in "${workloads[@]}"; do
	[[ " unary-c50 unary-c1 bidi-c10 sstream-c10 " == *" $w "* ]] || {
		echo "bench: unknown workload $w in BENCH_WORKLOADS (unary-c50, unary-c1, bidi-c10, sstream-c10)" >&2
		exit 2
	}
done
for t in "${targets[@]}"; do
	[[ " direct albctl rules nginx haproxy " == *" $t "* ]] || {
		echo "bench: unknown target $t in BENCH_TARGETS (direct, albctl, rules, nginx, haproxy)" >&2
		exit 2
	}
done

work=$(mktemp -d /tmp/albctl-bench.XXXXXX)
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${BENCH_KEEP:-} == 1 ]]; then
		echo "work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

# --- tools -----------------------------------------------------------------
missing=()
[[ " ${clients[*]} " != *" h2load "* ]] || command -v h2load >/dev/null || missing+=(nghttp2-client)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx)
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)

log "building albctl, benchtool and grpcload"
go build -o "$work/albctl" ./cmd/albctl
go build -o "$work/benchtool" ./scripts/bench/benchtool
go build -o "$work/grpcload" ./scripts/bench/grpcload
albctl=("$work/albctl" --state "$work/state.json")

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "nothing listens on 127.0.0.1:$1"
	return 1
}

# --- backends and proxies --------------------------------------------------
log "starting the echo servers, albctl serve, nginx and HAProxy"
"$work/albctl" echo-server --listen "127.0.0.1:$backend1" --name b1 >"$work/b1.log" 2>&1 &
pids+=($!)
"$work/albctl" echo-server --listen "127.0.0.1:$backend2" --name b2 >"$work/b2.log" 2>&1 &
pids+=($!)

"${albctl[@]}" lb create --name bench >/dev/null
"${albctl[@]}" servergroup create --name bench-backends --protocol gRPC --health-check-codes 12 >/dev/null
"${albctl[@]}" servergroup add-servers bench-backends --server "127.0.0.1:$backend1" --server "127.0.0.1:$backend2" >/dev/null
"${albctl[@]}" cert create --name bench --domain localhost --domain 127.0.0.1 >/dev/null
"${albctl[@]}" listener create --lb bench --protocol HTTPS --port "$port_albctl" --cert bench --server-group bench-backends >/dev/null
"$work/benchtool" export-cert "$work/state.json" bench "$work"
rules_listener=$("${albctl[@]}" listener create --lb bench --protocol HTTPS --port "$port_rules" --cert bench --server-group bench-backends | grep -o 'lsn-[a-z0-9]*' | head -1)
for ((i = 1; i < 100; i++)); do
	"${albctl[@]}" rule create --listener "$rules_listener" --priority "$i" --match "grpc-service=bench.Service$i" \
		--match header:x-canary=1 --forward bench-backends >/dev/null
done
"${albctl[@]}" rule create --listener "$rules_listener" --priority 100 --match grpc-service=albctl.echo.v1.Echo \
	--match header:te=trailers --forward bench-backends >/dev/null

# serve's defaults, access log included; its stderr (its log and the access
# log) goes to albctl.log.
"${albctl[@]}" serve --admin "127.0.0.1:$port_admin" >"$work/albctl.log" 2>&1 &
pid_albctl=$!
pids+=("$pid_albctl")

mkdir -p "$work/nginx-tmp"
fill() {
	sed -e "s|@WORK@|$work|g" -e "s|@PORT@|$2|g" -e "s|@BACKEND1@|$backend1|g" -e "s|@BACKEND2@|$backend2|g" "$1"
}
fill scripts/bench/nginx.conf "$port_nginx" >"$work/nginx.conf"
"$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.log" 2>&1 &
pid_nginx=$!
pids+=("$pid_nginx")

fill scripts/bench/haproxy.cfg "$port_haproxy" >"$work/haproxy.cfg"
"$haproxy_bin" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pid_haproxy=$!
pids+=("$pid_haproxy")

for port in "$backend1" "$backend2" "$port_albctl" "$port_rules" "$port_nginx" "$port_haproxy"; do
	wait_port "$port"
done

# Every target must answer a real gRPC call before it is measured.
for target in direct albctl rules nginx haproxy; do
	case $target in
	direct) addr=(-plaintext "127.0.0.1:$backend1") ;;
	albctl) addr=(-insecure "127.0.0.1:$port_albctl") ;;
	rules) addr=(-insecure "127.0.0.1:$port_rules") ;;
	nginx) addr=(-insecure "127.0.0.1:$port_nginx") ;;
	haproxy) addr=(-insecure "127.0.0.1:$port_haproxy") ;;
	esac
	if ! "$work/albctl" probe -max-time 5 -d '{"message": "hi"}' "${addr[@]}" albctl.echo.v1.Echo/UnaryEcho >"$work/probe-$target.log" 2>&1; then
		log "$target does not answer a gRPC call:"
		cat "$work/probe-$target.log" >&2
		exit 1
	fi
done

for kind in unary bidi server-stream; do
	"$work/benchtool" payload "$kind" "$work/$kind.bin"
done

# --- measuring -------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID...: user+system clock ticks of the processes, all their
# threads included (fields 14 and 15 of /proc/PID/stat, after the command
# name, which may hold spaces).
cpu_ticks() {
	local total=0 pid stat rest
	for pid in "$@"; do
		stat=$(<"/proc/$pid/stat") || continue
		rest=${stat##*) }
		read -r -a f <<<"$rest"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}

# proxy_pids TARGET: the processes whose CPU counts for a target (none for
# direct calls).
proxy_pids() {
	case $1 in
	albctl | rules) echo "$pid_albctl" ;;
	haproxy) echo "$pid_haproxy" ;;
	nginx) echo "$pid_nginx $(pgrep -P "$pid_nginx" | tr '\n' ' ')" ;;
	esac
}

# host_port TARGET
host_port() {
	case $1 in
	direct) echo "127.0.0.1:$backend1" ;;
	albctl) echo "127.0.0.1:$port_albctl" ;;
	rules) echo "127.0.0.1:$port_rules" ;;
	nginx) echo "127.0.0.1:$port_nginx" ;;
	haproxy) echo "127.0.0.1:$port_haproxy" ;;
	esac
}

# workload NAME: sets kind (request body and RPC), conns and inflight.
workload() {
	case $1 in
	unary-c50) kind=unary conns=2 inflight=50 ;;
	unary-c1) kind=unary conns=1 inflight=1 ;;
	bidi-c10) kind=bidi conns=1 inflight=10 ;;
	sstream-c10) kind=server-stream conns=1 inflight=10 ;;
	esac
}

# per_call TICKS CALLS: CPU microseconds per call.
per_call() {
	awk -v t="$1" -v hz="$clk_tck" -v n="$2" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }'
}

# measure_grpc_go WORKLOAD TARGET OUT LOG: one grpcload run; prints
# "calls/s p50 p99 errors calls cpu-ticks".
measure_grpc_go() {
	local kind conns inflight
	workload "$1"
	local args=(-addr "$(host_port "$2")" -workload "$kind" -conns "$conns" -inflight "$inflight"
		-warmup "${warmup_ms}ms" -duration "${duration_ms}ms" -pids "$(proxy_pids "$2")")
	[[ $2 == direct ]] || args+=(-cacert "$work/cert.pem")
	"$work/grpcload" "${args[@]}" >"$3" 2>"$4" && cat "$3"
}

# measure_h2load WORKLOAD TARGET OUT LOG: one h2load run after a short
# warm-up that opens connections (and, for nginx, its upstream keepalive
# pool); prints "calls/s p50 p99 errors calls cpu-ticks".
measure_h2load() {
	local kind conns inflight method
	workload "$1"
	case $kind in
	unary) method=UnaryEcho ;;
	bidi) method=BidirectionalStreamingEcho ;;
	server-stream) method=ServerStreamingEcho ;;
	esac
	local url=https
	[[ $2 != direct ]] || url=http
	url="$url://$(host_port "$2")/albctl.echo.v1.Echo/$method"
	local h2=(h2load -t 1 -c "$conns" -m "$((inflight / conns))" -d "$work/$kind.bin"
		-H "content-type: application/grpc" -H "te: trailers")
	"${h2[@]}" -n $((inflight * 20)) "$url" >/dev/null 2>&1 || true

	local pids_cpu=() before=0 after=0 stats
	read -r -a pids_cpu <<<"$(proxy_pids "$2")"
	((${#pids_cpu[@]} == 0)) || before=$(cpu_ticks "${pids_cpu[@]}")
	"${h2[@]}" -D "${duration_ms}ms" --log-file="$4.requests" "$url" >"$3" 2>&1 || true
	((${#pids_cpu[@]} == 0)) || after=$(cpu_ticks "${pids_cpu[@]}")
	stats=$("$work/benchtool" h2load "$3" "$4.requests" 2>>"$4") || return 1
	rm -f "$4.requests"
	echo "$stats $((after - before))"
}

results=$work/results.txt
: >"$results"
total_runs=$((rounds * ${#clients[@]} * ${#workloads[@]} * ${#targets[@]}))
runs_done=0
started=$SECONDS

# run CLIENT WORKLOAD TARGET ROUND: one measured run, appended to results.
run() {
	local client=$1 wl=$2 target=$3 round=$4
	local out="$work/$client-$wl-$target-$round.out" lg="$work/$client-$wl-$target-$round.log"
	local rate p50 p99 errs calls ticks cpu=- stats
	if ! stats=$("measure_${client//-/_}" "$wl" "$target" "$out" "$lg"); then
		log "$client $wl $target failed (counted as 1 error):"
		cat "$lg" "$out" >&2 2>/dev/null || true
		stats="0 0 0 1 0 0"
	fi
	read -r rate p50 p99 errs calls ticks <<<"$stats"
	if [[ $target != direct ]]; then
		cpu=0
		((calls == 0)) || cpu=$(per_call "$ticks" "$calls")
	fi
	echo "$client $wl $target $round $rate $p50 $p99 $errs $cpu" >>"$results"
	runs_done=$((runs_done + 1))
	local left=$(((SECONDS - started) * (total_runs - runs_done) / runs_done))
	log "[$runs_done/$total_runs, ~${left}s left] round $round $client $wl $target: $rate calls/s, p50 $p50 ms, p99 $p99 ms, $errs errors, $cpu µs CPU/call"
	if ((errs > 0)) && [[ -s $lg ]]; then
		grep -v "calls in all" "$lg" | sed 's/^/      /' >&2 || true
	fi
}

# Rounds interleave the targets so that a noisy moment on a shared machine
# touches every target alike; the order rotates between rounds.
log "$total_runs runs of ${duration}s: ${#clients[@]} clients × ${#workloads[@]} workloads × ${#targets[@]} targets × $rounds rounds"
for ((round = 1; round <= rounds; round++)); do
	for client in "${clients[@]}"; do
		for wl in "${workloads[@]}"; do
			for ((i = 0; i < ${#targets[@]}; i++)); do
				run "$client" "$wl" "${targets[(i + round - 1) % ${#targets[@]}]}" "$round"
			done
		done
	done
done

log "done in $((SECONDS - started))s; albctl's access log: $(grep -c . "$work/albctl.log") lines, $(du -h "$work/albctl.log" | cut -f1) in $work/albctl.log"
versions="$(go env GOVERSION), $("$work/grpcload" -version)"
[[ " ${clients[*]} " != *" h2load "* ]] || versions+=", h2load $(h2load --version | awk '{print $2; exit}')"
echo
echo "albctl $(git describe --always --dirty 2>/dev/null || echo '?') (serve defaults, access log on), $(nproc) cores, ${duration}s measured per run after ${warmup}s warm-up (grpc-go), $rounds rounds; $versions"
echo "nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||'), HAProxy $("$haproxy_bin" -v | awk '{print $3; exit}')"
"$work/benchtool" table "$results"
