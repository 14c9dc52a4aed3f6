#!/bin/sh
# bench/run-hot.sh — the hot-path figures of issue 13, zltk beside libuv.
#
#   bench/run-hot.sh [BUILD_DIR] [RUNS]
#
# BUILD_DIR is where "make bench" built the programs (default: the current
# directory); RUNS (default 5, at least 5 for quoted figures) runs of each
# program, alternating zltk, libuv, libuv, zltk, ... so slow drift of a
# shared machine hits both sides alike.  Cases: bench-post 1000000 with 1
# and with 4 producers, bench-timers 1000000.  Prints every line, then the
# medians and the ratio zltk/libuv of each figure.
set -eu
b=${1:-.}
runs=${2:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

for p in bench-post bench-timers; do
    if [ ! -x "$b/bench/$p" ]; then
        echo "run-hot: $b/bench/$p not built (run make bench in $b)" >&2
        exit 1
    fi
done
have_uv=yes
for p in bench-post-uv bench-timers-uv; do
    [ -x "$b/bench/$p" ] || have_uv=no
done
[ $have_uv = yes ] ||
    echo "run-hot: the libuv twins are not built (libuv1-dev missing at" \
         "configure time): zltk figures only"

# run CASE ZLTK-CMD UV-CMD: RUNS alternating runs of each into $tmp/CASE.*
run() {
    c=$1 z=$2 u=$3
    : >"$tmp/$c.all"; : >"$tmp/$c.libuv"
    i=0
    while [ $i -lt "$runs" ]; do
        if [ $((i % 2)) -eq 0 ]; then order="z u"; else order="u z"; fi
        for w in $order; do
            if [ $w = z ]; then
                $z | tee -a "$tmp/$c.all"
            elif [ $have_uv = yes ]; then
                $u | tee -a "$tmp/$c.libuv"
            fi
        done
        i=$((i + 1))
    done
    # bench-timers prints impl=zltk (nodes) and impl=zltk-handle lines.
    grep ' impl=zltk ' "$tmp/$c.all" >"$tmp/$c.zltk" || :
    grep ' impl=zltk-handle ' "$tmp/$c.all" >"$tmp/$c.handle" || :
}

# median FILE KEY: the median of KEY=value over the lines of FILE
median() {
    tr ' ' '\n' <"$1" | sed -n "s/^$2=//p" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) print "na";
              else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# report CASE KEY...: medians and ratio per key
report() {
    c=$1; shift
    for k in "$@"; do
        zm=$(median "$tmp/$c.zltk" "$k")
        um=$(median "$tmp/$c.libuv" "$k")
        r=$(awk -v a="$zm" -v b="$um" 'BEGIN {
            if (b == "na" || b + 0 == 0) print "na"; else printf "%.2f", a / b }')
        printf '%-13s %-24s zltk %-10s libuv %-10s zltk/libuv %s\n' \
            "$c" "$k" "$zm" "$um" "$r"
    done
}

B=$b/bench
run post1 "$B/bench-post 1000000 1" "$B/bench-post-uv 1000000 1"
run post4 "$B/bench-post 1000000 4" "$B/bench-post-uv 1000000 4"
run timers "$B/bench-timers 1000000" "$B/bench-timers-uv 1000000"

echo "medians of $runs runs each (alternating):"
report post1 tasks_per_s producer_ns_per_post wakeups
report post4 tasks_per_s producer_ns_per_post wakeups
report timers add_ns cancel_ns ns_per_timer_add+cancel bytes_per_timer
# The handle API (zl_poller_add_timer) against the same libuv runs.
mv "$tmp/timers.handle" "$tmp/timers-handle.zltk"
cp "$tmp/timers.libuv" "$tmp/timers-handle.libuv"
report timers-handle ns_per_timer_add+cancel bytes_per_timer
