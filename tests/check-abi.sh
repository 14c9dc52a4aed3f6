#!/bin/sh
# Plugin ABI 1.0 still holds: a plugin built against the ABI 1.0 headers
# (tests/abi-1.0/include, frozen) loads into today's zltk-host and runs.
#
# Two builds of tests/abi-1.0/abi10-fixture.c are tried:
#   - fresh: built by make check against the frozen headers only
#     (tests/plugins/abi10/.libs/abi10-fixture.so);
#   - prebuilt: tests/abi-1.0/prebuilt/abi10-fixture.x86_64.so, committed
#     (see tests/abi-1.0/README), on x86_64 Linux only.
# First, the layout: tests/abi-1.0/layout.c prints every ABI 1.0 field
# offset and size and every constant; built against the frozen headers and
# against today's, each of its lines must be the same in both (today's may
# print more: error codes or stages appended since).
# Then, for each build: zltk-host --list-plugins lists it with its handler and layer,
# and a server with the fixture's handler over the fixture's layer on
# 127.0.0.1:0 answers a socat client: ROT13 on the wire both ways, each
# line prefixed by the handler.
# One line per case ("ok: ..." / "FAIL: ..."), then "N passed, M failed".
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}" "${CC:=cc}"
export LC_ALL=C

host="$top_builddir/zltk-host"
fresh="$top_builddir/tests/plugins/abi10/.libs/abi10-fixture.so"
prebuilt="$top_srcdir/tests/abi-1.0/prebuilt/abi10-fixture.x86_64.so"
if [ ! -x "$host" ]; then
    echo "FAIL: $host not built"; echo "0 passed, 1 failed"; exit 1
fi
for t in timeout socat; do
    if ! command -v $t >/dev/null 2>&1; then
        echo "SKIP: $t(1) not found"; exit 77
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-check-abi.XXXXXX") || exit 99
hostpid=
cleanup() {
    [ -n "$hostpid" ] && kill "$hostpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Only the directory each case names: no installed plugins either.
unset ZLTK_PLUGIN_PATH
ZLTK_PLUGIN_SYSTEM_PATH=; export ZLTK_PLUGIN_SYSTEM_PATH

passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() {
    echo "FAIL: $1: $2"
    for _f in out err got; do
        [ -s "$tmp/$_f" ] && sed "s/^/  $_f: /" "$tmp/$_f"
    done
    failed=$((failed + 1))
}

cat >"$tmp/abi10.conf" <<'EOF'
[host]
pollers = 1

# Loads abi10-fixture.so, whose handler and layer have other names.
[plugin.abi10-fixture]

[server.abi10]
plugin = abi10-prefix
address = 127.0.0.1:0
transport = abi10-rot13
EOF
printf 'hello world\nsecond line, ABI 1.0\n' | tr 'A-Za-z' 'N-ZA-Mn-za-m' \
    >"$tmp/send"
printf 'abi10: hello world\nabi10: second line, ABI 1.0\n' |
    tr 'A-Za-z' 'N-ZA-Mn-za-m' >"$tmp/want"

# try NAME SO: the two checks against plugin file SO.
try() {
    _n=$1
    rm -rf "$tmp/dir" && mkdir "$tmp/dir" &&
        cp "$2" "$tmp/dir/abi10-fixture.so" || { bad "$_n" "cannot copy $2"; return; }
    : >"$tmp/got"

    timeout -k 5 20 "$host" --list-plugins -P "$tmp/dir" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "$_n: --list-plugins" "exit $rc"
    elif ! grep -q '^abi10-fixture 1.0 (ABI 1.0)' "$tmp/out" ||
         ! grep -q "server handler 'abi10-prefix'" "$tmp/out" ||
         ! grep -q "layer 'abi10-rot13'" "$tmp/out"; then
        bad "$_n: --list-plugins" "no abi10-fixture with its handler and layer"
    else
        ok "$_n: --list-plugins lists abi10-fixture (ABI 1.0), handler and layer"
    fi

    # In the background, bounded by --duration (and SIGKILL below).
    : >"$tmp/out"
    "$host" -c "$tmp/abi10.conf" -P "$tmp/dir" -d 20 \
        </dev/null >"$tmp/out" 2>"$tmp/err" &
    hostpid=$!
    port= _i=0
    while [ -z "$port" ] && [ $_i -lt 100 ] && kill -0 $hostpid 2>/dev/null; do
        sleep 0.1; _i=$((_i + 1))
        port=$(sed -n 's/.*\[server\.abi10\] abi10-prefix listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' \
            "$tmp/err" | head -n 1)
    done
    if [ -z "$port" ]; then
        bad "$_n: run" "no 'listening on' line within 10 s"
    else
        timeout 10 socat -t 2 - "TCP:127.0.0.1:$port" <"$tmp/send" \
            >"$tmp/got" 2>>"$tmp/err"
        if cmp -s "$tmp/want" "$tmp/got"; then
            ok "$_n: a server of the handler over the layer answers ($(head -n 1 "$tmp/got"))"
        else
            bad "$_n: run" "socat got other bytes than '$(head -n 1 "$tmp/want")...'"
        fi
    fi
    kill "$hostpid" 2>/dev/null
    _i=0
    while kill -0 "$hostpid" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1; _i=$((_i + 1))
    done
    kill -9 "$hostpid" 2>/dev/null
    wait "$hostpid" 2>/dev/null
    rc=$? hostpid=
    if [ -n "$port" ] && [ $rc -ne 0 ]; then
        bad "$_n: stop" "zltk-host exited $rc on SIGTERM"
    fi
}

# layout: the ABI 1.0 layout is unchanged in today's headers.
layout() {
    _src="$top_srcdir/tests/abi-1.0/layout.c"
    : >"$tmp/got"
    if ! $CC -std=gnu11 -Wall -Wextra -Werror -I"$top_srcdir/tests/abi-1.0/include" \
            -o "$tmp/layout-1.0" "$_src" >"$tmp/out" 2>"$tmp/err" ||
       ! "$tmp/layout-1.0" >"$tmp/layout-1.0.txt" 2>"$tmp/err"; then
        bad "layout" "layout.c does not build or run against the ABI 1.0 headers"
        return
    fi
    if ! $CC -std=gnu11 -Wall -Wextra -Werror -I"$top_srcdir/include" \
            -I"$top_builddir/include" -o "$tmp/layout-now" "$_src" \
            >"$tmp/out" 2>"$tmp/err" ||
       ! "$tmp/layout-now" >"$tmp/layout-now.txt" 2>"$tmp/err"; then
        bad "layout" "layout.c does not build against today's headers: an ABI 1.0 field or constant is gone or renamed"
        return
    fi
    if grep -Fxv -f "$tmp/layout-now.txt" "$tmp/layout-1.0.txt" \
            >"$tmp/missing"; then
        sed 's/^/ABI 1.0 has: /' "$tmp/missing" >"$tmp/got"
        bad "layout" "today's headers differ from ABI 1.0 (offset size, or value)"
    else
        ok "layout: $(wc -l <"$tmp/layout-1.0.txt" | tr -d ' ') offsets, sizes and constants of ABI 1.0 unchanged"
    fi
    : >"$tmp/got"; : >"$tmp/out"; : >"$tmp/err"
}
layout

if [ -r "$fresh" ]; then
    try "fresh build" "$fresh"
else
    bad "fresh build" "$fresh not built (make check builds it)"
fi
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
    try "prebuilt (x86_64)" "$prebuilt"
else
    echo "ok: prebuilt: skipped, it is an x86_64 Linux binary and this is $(uname -s)-$(uname -m)"
fi

echo "$passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
