#!/bin/sh
# bench/run-echo.sh [ROUNDS] [SECONDS] — echo figures of the zltk server
# against the plain epoll baseline, and of zltk-host running the echo plugin
# against the same server compiled without plugins, in one run, on loopback.
#
# Each round runs the load generator against the baseline, then against
# bench/echo-server (1 poller, like the single-threaded baseline), then
# against "zltk-host --listen" with the bundled echo plugin (1 poller); the
# last lines give per-figure medians and the ratios zltk/baseline and
# host/zltk.  Build first with "make bench" in the build directory; run
# from there.
set -eu
rounds=${1:-3}
secs=${2:-2}
dir=${ZLTK_BENCH_DIR:-./bench}   # the built programs (run from the build dir)
out=$(mktemp -d)
trap 'kill $spid 2>/dev/null || true; rm -rf "$out"' EXIT INT TERM
port=$((20000 + $$ % 20000))

run_server() { # name cmd... (an argument @PORT becomes the port, @ADDR
    name=$1; shift  # 127.0.0.1:port)
    n=$#
    for a in "$@"; do
        case $a in @PORT) a=$port ;; @ADDR) a=127.0.0.1:$port ;; esac
        set -- "$@" "$a"
    done
    shift "$n"
    "$@" >"$out/$name.srv" 2>&1 &
    spid=$!
    # Up to 10 s: a libtool wrapper relinks its program on the first run
    # after the library changed.
    for _ in $(seq 50); do
        grep -q listening "$out/$name.srv" 2>/dev/null && break
        sleep 0.2
    done
}

for r in $(seq 1 "$rounds"); do
    for name in baseline zltk host; do
        case $name in
        baseline) run_server baseline "$dir/baseline-echo" --port @PORT ;;
        zltk) run_server zltk "$dir/echo-server" --pollers 1 --port @PORT ;;
        host) run_server host "$dir/../zltk-host" --listen @ADDR --pollers 1 \
                  --workers 1 --plugin-dir "$dir/../plugins/.libs" ;;
        esac
        "$dir/loadgen" --port "$port" --server-pid "$spid" --seconds "$secs" \
            >"$out/$name.$r" || { echo "loadgen failed against $name"; cat "$out/$name.$r"; exit 1; }
        kill "$spid"; wait "$spid" 2>/dev/null || true
        port=$((port + 1))
        sed "s/^/round $r $name: /" "$out/$name.$r"
    done
done

# Medians per figure: first number on each line, and the server CPU figure.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
printf '%-10s %14s %14s %14s %8s %8s\n' figure baseline zltk host \
    zltk/base host/zltk
ratio() { awk -v b="$1" -v z="$2" 'BEGIN { if (b > 0) printf "%.3f", z / b; else print "-" }'; }
for fig in pingpong msgs100 stream16k cps idle; do
    for name in baseline zltk host; do
        cat "$out"/$name.* | grep "^$fig:" | awk -v f="$fig" '{
            if (f == "idle") { for (i = 1; i <= NF; i++) if ($i == "bytes") print $(i-1) }
            else print $2 }' | median > "$out/m.$name"
    done
    b=$(cat "$out/m.baseline"); z=$(cat "$out/m.zltk"); h=$(cat "$out/m.host")
    printf '%-10s %14s %14s %14s %8s %8s\n' "$fig" "$b" "$z" "$h" \
        "$(ratio "$b" "$z")" "$(ratio "$z" "$h")"
done
for name in baseline zltk host; do
    cat "$out"/$name.* | grep -o 'p50 [0-9.]* us' | awk '{print $2}' | median > "$out/p50.$name"
    cat "$out"/$name.* | grep '^msgs100' | grep -o 'cpu [0-9.]*' | awk '{print $2}' | median > "$out/cpu.$name"
done
printf '%-10s %14s %14s %14s\n' "p50 us" "$(cat "$out/p50.baseline")" \
    "$(cat "$out/p50.zltk")" "$(cat "$out/p50.host")"
printf '%-10s %14s %14s %14s\n' "cpu us/msg" "$(cat "$out/cpu.baseline")" \
    "$(cat "$out/cpu.zltk")" "$(cat "$out/cpu.host")"
echo "(zltk = bench/echo-server, host = zltk-host with the echo plugin;"
echo " ratios of medians; for idle, bytes per connection: lower is better)"
