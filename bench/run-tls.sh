#!/bin/sh
# bench/run-tls.sh [ROUNDS] [SECONDS] — TLS echo figures of zltk-host (the
# echo plugin over the tls layer plugin, one poller) against a libevent
# bufferevent_openssl echo server (bench/tls-baseline, one thread), in one
# run, on loopback, TLS 1.3, one throwaway EC P-256 certificate.
#
# Each round runs, against each server in turn (the order flips every
# round):
#   tls16k     bench/tls-loadgen: 10 connections, 16 KiB messages, 4 in
#              flight per connection: MB/s, per-message round trip p50/p99,
#              per-connection MB/s min/max (fairness), server CPU per message
#   tls16k-d8  the same with 8 in flight (128 KiB, as loadgen's stream16k)
#   tls16k-d16 16 in flight (256 KiB): more than one 128 KiB socket read per
#              connection is always waiting, which tests fairness
#   hs         openssl s_time -new: full handshakes per second (one
#              sequential client; connections / wall-clock time) and the
#              server's CPU time per handshake
# and, once per round, s_time against "openssl s_server -www" as a third
# handshake reference.  The last lines give per-figure medians and the
# ratios zltk/baseline.  With ZLTK_BEFORE=DIR (the build directory of
# another checkout, say the commit before a change) its zltk-host runs too,
# as "before", in the same alternation, with columns of its own: a
# before/after comparison in one run.  Build first with "make bench" in the build
# directory (bench/tls-baseline needs libevent-dev at configure time); run
# from there.  About 9 * SECONDS + 5 seconds per round (3 rounds of 3 s:
# about 100 s).
set -eu
rounds=${1:-3}
secs=${2:-2}
dir=${ZLTK_BENCH_DIR:-./bench}   # the built programs (run from the build dir)
before=${ZLTK_BEFORE:-}
st_secs=$(printf '%.0f' "$secs")
[ "$st_secs" -ge 1 ] || st_secs=1
for p in "$dir/tls-loadgen" "$dir/tls-baseline" "$dir/../zltk-host"; do
    if [ ! -x "$p" ]; then
        echo "run-tls.sh: $p is missing: run \"make bench\" in the build" \
             "directory (tls-baseline needs libevent-dev, then configure)" >&2
        exit 1
    fi
done
if [ -n "$before" ] && [ ! -x "$before/zltk-host" ]; then
    echo "run-tls.sh: ZLTK_BEFORE=$before has no zltk-host" >&2
    exit 1
fi
command -v openssl >/dev/null || { echo "run-tls.sh: no openssl" >&2; exit 1; }

name=run-tls.sh
. "$(dirname "$0")/tls-common.sh"
tck=$(getconf CLK_TCK)

cpu_ticks() { # utime+stime of $spid
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$spid/stat"
}

handshakes() { # name: s_time against the running server
    c0=$(cpu_ticks)
    t0=$(date +%s%N)
    openssl s_time -connect "127.0.0.1:$port" -new -time "$st_secs" \
        -tls1_3 >"$out/st" 2>&1 || { cat "$out/st" >&2; exit 1; }
    t1=$(date +%s%N)
    c1=$(cpu_ticks)
    n=$(awk '/connections in .*s;/ { print $1; exit }' "$out/st")
    awk -v n="${n:-0}" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" \
        -v tck="$tck" 'BEGIN {
        printf "hs: %.0f handshakes/s, server cpu %.0f us/handshake " \
               "(%d in %.2f s)\n", n / ((t1 - t0) / 1e9),
               n ? c / tck * 1e6 / n : 0, n, (t1 - t0) / 1e9 }'
}

one() { # name round
    start_server "$1"
    for d in 4 8 16; do
        label=tls16k
        [ "$d" = 4 ] || label=tls16k-d$d
        "$dir/tls-loadgen" --port "$port" --server-pid "$spid" \
            --seconds "$secs" --conns 10 --size 16384 --depth "$d" \
            --name "$label" >>"$out/$1.$2" ||
            { echo "tls-loadgen failed against $1"; cat "$out/$1.$2"
              cat "$out/$1.srv"; exit 1; }
    done
    handshakes "$1" >>"$out/$1.$2"
    stop_server
    port=$((port + 1))
    sed "s/^/round $2 $1: /" "$out/$1.$2"
}

names="baseline zltk"
[ -n "$before" ] && names="baseline before zltk"
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then list=$names
    else list=$(echo "$names" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for n in $list; do one "$n" "$r"; done
    start_server s_server
    handshakes s_server >"$out/s_server.$r"
    stop_server
    port=$((port + 1))
    sed "s/^/round $r s_server: /" "$out/s_server.$r"
done

# Medians: the number after a word ("p99"), or before one ("us/msg").
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fig() { # name line-prefix word
    cat "$out"/$1.* 2>/dev/null | grep "^$2:" | awk -v w="$3" '{
        for (i = 1; i < NF; i++) {
            k = $i; sub(/^\(/, "", k)
            if (k == w) { v = $(i+1); sub(/[,;)]*$/, "", v); print v; break }
        } }' | median
}
preceding() { # name line-prefix word
    cat "$out"/$1.* 2>/dev/null | grep "^$2:" | awk -v w="$3" '{
        for (i = 2; i <= NF; i++)
            if ($i == w || $i == w "," || $i == w ";") { print $(i-1); break }
        }' | median
}
first() { # name line-prefix: the first number
    cat "$out"/$1.* 2>/dev/null | grep "^$2:" | awk '{print $2}' | median
}
ratio() { awk -v b="$1" -v z="$2" 'BEGIN { if (b > 0) printf "%.3f", z / b; else print "-" }'; }
# row LABEL GETTER LINE-PREFIX [WORD]: the medians of baseline, before (with
# ZLTK_BEFORE), zltk, the ratios of zltk to them, and s_server (handshakes).
row() {
    bv=$($2 baseline "$3" ${4:-}); zv=$($2 zltk "$3" ${4:-}); sv=
    [ "$3" = hs ] && sv=$($2 s_server "$3" ${4:-})
    if [ -n "$before" ]; then
        pv=$($2 before "$3" ${4:-})
        printf '%-26s %10s %10s %10s %9s %9s %10s\n' "$1" "$bv" "$pv" "$zv" \
            "$(ratio "$bv" "$zv")" "$(ratio "$pv" "$zv")" "$sv"
    else
        printf '%-26s %10s %10s %9s %10s\n' "$1" "$bv" "$zv" \
            "$(ratio "$bv" "$zv")" "$sv"
    fi
}
echo
if [ -n "$before" ]; then
    printf '%-26s %10s %10s %10s %9s %9s %10s\n' figure baseline before zltk \
        zltk/base zltk/bef s_server
else
    printf '%-26s %10s %10s %9s %10s\n' figure baseline zltk zltk/base s_server
fi
for l in tls16k tls16k-d8 tls16k-d16; do
    row "$l MB/s" first $l
    row "$l p50 us" fig $l p50
    row "$l p99 us" fig $l p99
    row "$l p99.9 us" fig $l p99.9
    row "$l conn min/max" fig $l min/max
    row "$l server us/msg" preceding $l us/msg
done
row "handshakes/s" first hs
row "server us/handshake" preceding hs us/handshake
echo "(baseline = libevent bufferevent_openssl, zltk = zltk-host + echo over"
echo " tls; medians of $rounds rounds of ${secs} s; conn min/max: slowest over"
echo " fastest connection's MB/s, 1 = fair; server us: its CPU time per"
echo " 16 KiB message / per handshake, lower is better)"
[ -z "$before" ] || echo "(before = zltk-host and plugins of $before)"
