#!/bin/sh
# bench/run-tls-idle.sh [ROUNDS] [CONNS] — server memory per idle TLS
# session (bench/tls-idle: CONNS TLS 1.3 connections, one 64-byte echo
# each, then held idle; the server's VmRSS growth per session) of
# zltk-host (echo plugin over tls, one poller) against the libevent
# bufferevent_openssl baseline (bench/tls-baseline), in one run, the order
# flipping every round; medians at the end.  With ZLTK_BEFORE=DIR (the
# build directory of another checkout) its zltk-host runs too, as
# "before".  Build first with "make bench"; run from the build directory.
# Defaults: 5 rounds of 4000 connections (about 15 s per server and round).
set -eu
rounds=${1:-5}
conns=${2:-4000}
dir=${ZLTK_BENCH_DIR:-./bench}
before=${ZLTK_BEFORE:-}
for p in "$dir/tls-idle" "$dir/tls-baseline" "$dir/../zltk-host"; do
    [ -x "$p" ] || { echo "run-tls-idle.sh: $p is missing: make bench" >&2
                     exit 1; }
done
name=run-tls-idle.sh
. "$(dirname "$0")/tls-common.sh"

one() { # name round
    start_server "$1"
    "$dir/tls-idle" --port "$port" --server-pid "$spid" --conns "$conns" \
        --name "$1" >"$out/$1.$2" || { cat "$out/$1.srv" >&2; exit 1; }
    stop_server
    port=$((port + 1))
    sed "s/^/round $2: /" "$out/$1.$2"
}

names="baseline zltk"
[ -n "$before" ] && names="baseline before zltk"
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then list=$names
    else list=$(echo "$names" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for n in $list; do one "$n" "$r"; done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
for n in $names; do
    m=$(cat "$out/$n".* | awk '{ for (i = 1; i <= NF; i++)
        if ($i == "bytes/session") print $(i-1) }' | median)
    printf '%-10s %8s bytes/idle TLS session (median of %s rounds, %s held)\n' \
        "$n" "$m" "$rounds" "$conns"
done
