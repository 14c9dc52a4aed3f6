#!/bin/sh
# bench/run-burst.sh [CONNS] [WAIT] — does zltk-host give memory back after
# a burst?  For each transport (plain, then TLS with an ephemeral
# certificate), starts "zltk-host --listen [tls://]127.0.0.1:PORT" (the echo
# plugin), reads its RSS from /proc/PID/status, lets bench/burst open CONNS
# (default 200) connections that send until the server's queues are full
# and never read, reads the peak (VmHWM), closes them, waits WAIT seconds
# (default 10) and reads the RSS again.  One line per transport:
#   bench=burst impl=zltk transport=plain conns=N lost=K before_kb=B
#       peak_kb=P after_kb=A limit_kb=L ok=yes|no
# (lost: connections the server's send timeout ended while others filled)
# with L = 2 * B + 16384 (the bound issue 10 sets: within 10 s of the
# burst's end, RSS back within twice the baseline plus 16 MB).  Exit 1 if a
# transport is not ok.  ZLTK_BURST_ARGS adds options to zltk-host (e.g.
# "--pollers 1").  Build first with "make bench" in the build directory;
# run from there.
set -eu
conns=${1:-200}
wait_s=${2:-10}
dir=${ZLTK_BENCH_DIR:-./bench}   # the built programs (run from the build dir)
hostprog=$dir/../zltk-host
for p in "$dir/burst" "$hostprog"; do
    if [ ! -x "$p" ]; then
        echo "run-burst.sh: $p is missing: run \"make bench\" in the build" \
             "directory" >&2
        exit 1
    fi
done
# The clients take CONNS descriptors, the server as many.
[ "$(ulimit -n)" -ge $((conns + 64)) ] 2>/dev/null ||
    ulimit -n $((conns + 64)) 2>/dev/null || true

out=$(mktemp -d)
spid=
bpid=
stop() {
    for p in $bpid $spid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    bpid=
    spid=
}
trap 'stop; rm -rf "$out"' EXIT
trap 'exit 1' INT TERM
port=$((20000 + $$ % 20000))

# The real binary's pid: a libtool wrapper script execs it, so $! is it.
kb() { # field pid
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"
}

wait_for() { # file pattern tenths
    for _ in $(seq "$3"); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

fail=0
for transport in plain tls; do
    case $transport in
    plain) url=127.0.0.1:$port; tflag= ;;
    tls) url=tls://127.0.0.1:$port; tflag=--tls ;;
    esac
    # shellcheck disable=SC2086 # ZLTK_BURST_ARGS: several words
    "$hostprog" --listen "$url" --plugin-dir "$dir/../plugins/.libs" \
        ${ZLTK_BURST_ARGS:-} >"$out/srv.$transport" 2>&1 &
    spid=$!
    # Up to 10 s: a libtool wrapper relinks its program on the first run
    # after the library changed.
    if ! wait_for "$out/srv.$transport" listening 100; then
        echo "run-burst.sh: zltk-host did not start:" >&2
        cat "$out/srv.$transport" >&2
        exit 1
    fi
    sleep 0.5
    before=$(kb VmRSS "$spid")
    "$dir/burst" --port "$port" --conns "$conns" $tflag \
        >"$out/burst.$transport" 2>&1 &
    bpid=$!
    if ! wait_for "$out/burst.$transport" saturated 600; then
        echo "run-burst.sh: the burst did not saturate in 60 s:" >&2
        cat "$out/burst.$transport" >&2
        exit 1
    fi
    peak=$(kb VmHWM "$spid")
    lost=$(sed -n 's/^saturated.* lost=\([0-9]*\).*/\1/p' "$out/burst.$transport")
    wait "$bpid" || { cat "$out/burst.$transport" >&2; exit 1; }
    bpid=
    sleep "$wait_s"
    after=$(kb VmRSS "$spid")
    limit=$((2 * before + 16384))
    ok=yes
    [ "$after" -le "$limit" ] || { ok=no; fail=1; }
    echo "bench=burst impl=zltk transport=$transport conns=$conns lost=$lost" \
         "before_kb=$before peak_kb=$peak after_kb=$after limit_kb=$limit ok=$ok"
    stop
    port=$((port + 1))
done
exit $fail
