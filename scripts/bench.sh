#!/usr/bin/env bash
# bench.sh runs the same gRPC load with h2load against an echo backend
# directly, through albctl, through nginx and through HAProxy, all on
# 127.0.0.1, and prints one table: calls/s, p50, p99, errors and the proxy
# process's CPU seconds per 10,000 calls, medians of interleaved rounds, with
# albctl's ratios to the others.
#
# Workloads: unary calls of ~1 KiB with 50 in flight, unary calls one at a
# time (latency), and bidirectional streams of ten 1 KiB messages each way
# with 10 in flight.
#
# Installs h2load (nghttp2-client), nginx and haproxy from Debian's packages
# when they are missing. Settings (environment):
#   BENCH_DURATION   seconds per run (default 4)
#   BENCH_ROUNDS     interleaved rounds (default 3)
#   BENCH_PORT_BASE  first of 7 consecutive ports on 127.0.0.1 (default 19400)
#   BENCH_KEEP=1     keep the work directory (logs, configs, raw results)
set -euo pipefail

cd "$(dirname "$0")/.."
duration=${BENCH_DURATION:-4}
rounds=${BENCH_ROUNDS:-3}
base=${BENCH_PORT_BASE:-19400}
backend1=$base backend2=$((base + 1)) port_albctl=$((base + 2)) port_nginx=$((base + 3))
port_haproxy=$((base + 4)) port_admin=$((base + 5))

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
command -v h2load >/dev/null || missing+=(nghttp2-client)
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

log "building albctl"
go build -o "$work/albctl" ./cmd/albctl
go build -o "$work/benchtool" ./scripts/bench/benchtool
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
"$work/albctl" echo-server --listen "127.0.0.1:$backend1" --name b1 >"$work/b1.log" 2>&1 &
pid_b1=$!
pids+=("$pid_b1")
"$work/albctl" echo-server --listen "127.0.0.1:$backend2" --name b2 >"$work/b2.log" 2>&1 &
pids+=($!)

"${albctl[@]}" lb create --name bench >/dev/null
"${albctl[@]}" servergroup create --name bench-backends --protocol gRPC --health-check-codes 12 >/dev/null
"${albctl[@]}" servergroup add-servers bench-backends --server "127.0.0.1:$backend1" --server "127.0.0.1:$backend2" >/dev/null
"${albctl[@]}" cert create --name bench --domain localhost --domain 127.0.0.1 >/dev/null
"${albctl[@]}" listener create --lb bench --protocol HTTPS --port "$port_albctl" --cert bench --server-group bench-backends >/dev/null
"$work/benchtool" export-cert "$work/state.json" bench "$work"

"${albctl[@]}" serve --access-log off --admin "127.0.0.1:$port_admin" >"$work/albctl.log" 2>&1 &
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

for port in "$backend1" "$backend2" "$port_albctl" "$port_nginx" "$port_haproxy"; do
	wait_port "$port"
done

# Every target must answer a real gRPC call before it is measured.
for target in direct albctl nginx haproxy; do
	case $target in
	direct) addr=(-plaintext "127.0.0.1:$backend1") ;;
	albctl) addr=(-insecure "127.0.0.1:$port_albctl") ;;
	nginx) addr=(-insecure "127.0.0.1:$port_nginx") ;;
	haproxy) addr=(-insecure "127.0.0.1:$port_haproxy") ;;
	esac
	if ! "$work/albctl" probe -max-time 5 -d '{"message": "hi"}' "${addr[@]}" albctl.echo.v1.Echo/UnaryEcho >"$work/probe-$target.log" 2>&1; then
		log "$target does not answer a gRPC call:"
		cat "$work/probe-$target.log" >&2
		exit 1
	fi
done

"$work/benchtool" payload unary "$work/unary.bin"
"$work/benchtool" payload stream "$work/stream.bin"

# --- measuring -------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID...: user+system clock ticks of the processes and their
# children threads (fields 14 and 15 of /proc/PID/stat, after the command
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

# proxy_pids TARGET: the processes whose CPU counts for a target.
proxy_pids() {
	case $1 in
	albctl) echo "$pid_albctl" ;;
	haproxy) echo "$pid_haproxy" ;;
	nginx) echo "$pid_nginx" $(pgrep -P "$pid_nginx" || true) ;;
	esac
}

url_for() {
	case $1 in
	direct) echo "http://127.0.0.1:$backend1" ;;
	albctl) echo "https://127.0.0.1:$port_albctl" ;;
	nginx) echo "https://127.0.0.1:$port_nginx" ;;
	haproxy) echo "https://127.0.0.1:$port_haproxy" ;;
	esac
}

results=$work/results.txt
: >"$results"

# run WORKLOAD TARGET ROUND: one measured h2load run, after a short warm-up
# that opens connections (and, for nginx, its upstream keepalive pool).
run() {
	local workload=$1 target=$2 round=$3 method body conns streams
	case $workload in
	unary-c50) method=UnaryEcho body=unary.bin conns=2 streams=25 ;;
	unary-c1) method=UnaryEcho body=unary.bin conns=1 streams=1 ;;
	stream-c10) method=BidirectionalStreamingEcho body=stream.bin conns=1 streams=10 ;;
	esac
	local url
	url="$(url_for "$target")/albctl.echo.v1.Echo/$method"
	local h2=(h2load -t 1 -c "$conns" -m "$streams" -d "$work/$body"
		-H "content-type: application/grpc" -H "te: trailers")
	"${h2[@]}" -n $((conns * streams * 20)) "$url" >/dev/null 2>&1 || true

	local pids_cpu=() before after cpu
	read -r -a pids_cpu <<<"$(proxy_pids "$target")"
	((${#pids_cpu[@]})) && before=$(cpu_ticks "${pids_cpu[@]}")
	local out="$work/$workload-$target-$round.out" lg="$work/$workload-$target-$round.log"
	"${h2[@]}" -D "$duration" --log-file="$lg" "$url" >"$out" 2>&1 || true
	if ((${#pids_cpu[@]})); then
		after=$(cpu_ticks "${pids_cpu[@]}")
	fi
	local rate p50 p99 errs calls
	read -r rate p50 p99 errs calls <<<"$("$work/benchtool" h2load "$out" "$lg")"
	cpu=-
	if ((${#pids_cpu[@]})) && ((calls > 0)); then
		cpu=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$calls" 'BEGIN { printf "%.3f", t / hz / n * 10000 }')
	fi
	echo "$workload $target $round $rate $p50 $p99 $errs $cpu" >>"$results"
	log "round $round $workload $target: $rate calls/s, p50 $p50 ms, p99 $p99 ms, $errs errors, $cpu CPU s/10k calls"
	rm -f "$lg"
}

# Rounds interleave the targets so that a noisy moment on a shared machine
# touches every target alike; the order rotates between rounds.
targets=(direct albctl nginx haproxy)
for ((round = 1; round <= rounds; round++)); do
	for workload in unary-c50 unary-c1 stream-c10; do
		for ((i = 0; i < ${#targets[@]}; i++)); do
			run "$workload" "${targets[(i + round - 1) % ${#targets[@]}]}" "$round"
		done
	done
done

echo
echo "albctl $(git describe --always --dirty 2>/dev/null || echo '?'), $(nproc) cores, $duration s per run, medians of $rounds rounds, h2load $(h2load --version | awk '{print $2; exit}')"
"$work/benchtool" table "$results"
