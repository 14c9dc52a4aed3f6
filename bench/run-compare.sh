#!/bin/sh
# bench/run-compare.sh BEFORE AFTER [PAIRS] [SECONDS] — the echo and TLS
# figures of two builds of zltk (say, the commit before a refactoring and
# the one after it) in one run, alternating, on loopback.
#
# BEFORE and AFTER are build directories in which "make bench" has run.
# Each pair runs bench/run-echo.sh and bench/run-tls.sh for one round with
# each build's own programs, the order flipping every pair so that drift in
# a noisy machine falls on both sides.  The last lines give, per figure, the
# median over the pairs of each build and the ratio after/before (for
# latency, CPU and bytes lower is better; for everything else higher).
# About PAIRS * 2 * (8 * SECONDS + 30) seconds: 3 pairs of 2 s, about 5 min.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 BEFORE-BUILD-DIR AFTER-BUILD-DIR [PAIRS] [SECONDS]" >&2; exit 2; }
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
pairs=${3:-3}
secs=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
for d in "$before" "$after"; do
    for p in bench/loadgen bench/echo-server bench/baseline-echo zltk-host; do
        [ -x "$d/$p" ] || { echo "run-compare.sh: $d/$p is missing: run \"make bench\" there" >&2; exit 1; }
    done
done
tls=yes
for d in "$before" "$after"; do
    [ -x "$d/bench/tls-baseline" ] && [ -x "$d/bench/tls-loadgen" ] || tls=no
done
[ "$tls" = yes ] || echo "run-compare.sh: no bench/tls-baseline (libevent-dev at configure time): echo figures only"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

one() { # side dir
    ZLTK_BENCH_DIR=$2/bench sh "$here/run-echo.sh" 1 "$secs" >"$out/run" 2>&1 ||
        { cat "$out/run"; exit 1; }
    grep '^round 1 \(zltk\|host\):' "$out/run" | sed "s/^round 1 /$1 /" >>"$out/lines"
    if [ "$tls" = yes ]; then
        ZLTK_BENCH_DIR=$2/bench sh "$here/run-tls.sh" 1 "$secs" >"$out/run" 2>&1 ||
            { cat "$out/run"; exit 1; }
        grep '^round 1 zltk:' "$out/run" | sed "s/^round 1 zltk/$1 tls/" >>"$out/lines"
    fi
}

for p in $(seq 1 "$pairs"); do
    if [ $((p % 2)) = 1 ]; then one before "$before"; one after "$after"
    else one after "$after"; one before "$before"; fi
    echo "pair $p of $pairs done"
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print "-"}'; }
# value SIDE SERVER FIGURE WORD: the number after WORD on the figure's lines
# (WORD "-": the first number after the figure's name; "<WORD": the number
# before WORD).
value() {
    grep "^$1 $2: $3:" "$out/lines" | awk -v w="$4" '{
        for (i = 4; i <= NF; i++) {
            if (w == "-" && $i ~ /^[0-9.]+$/) { print $i; exit }
            if (w ~ /^</ && $i == substr(w, 2)) { print $(i - 1); exit }
            if ($i == w) { print $(i + 1); exit }
        }
    }' | median
}
row() { # label server figure word
    b=$(value before "$2" "$3" "$4"); a=$(value after "$2" "$3" "$4")
    r=$(awk -v b="$b" -v a="$a" 'BEGIN { if (b + 0 > 0) printf "%.3f", a / b; else print "-" }')
    printf '%-26s %14s %14s %8s\n' "$1" "$b" "$a" "$r"
}
echo
printf '%-26s %14s %14s %8s\n' figure before after after/before
for f in pingpong msgs100 stream16k cps; do
    row "echo-server $f" zltk "$f" -
    row "zltk-host $f" host "$f" -
done
row "echo-server p50 us" zltk pingpong p50
row "echo-server msgs100 cpu" zltk msgs100 cpu
row "echo-server idle bytes" zltk idle "<bytes"
if [ "$tls" = yes ]; then
    row "tls tls16k MB/s" tls tls16k -
    row "tls tls16k-d8 MB/s" tls tls16k-d8 -
    row "tls tls16k p50" tls tls16k p50
    row "tls handshakes/s" tls hs -
fi
echo "(medians over $pairs pairs of one round each, $secs s per figure)"
