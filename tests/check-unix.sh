#!/bin/sh
# End-to-end tests of zltk-host over Unix-domain sockets: --listen
# unix:PATH answering socat(1), --connect unix:PATH to a socat server, a
# stale socket file replaced, a live one and a regular file refused, the
# file removed at stop, unix-mode applied, and --check-config's checks of
# unix: addresses (too long, directory missing, bad unix-mode).
# One line per case ("ok: ..." / "FAIL: ..."), then "N passed, M failed".
# Every process is bounded in time; background ones are stopped by pid.
: "${top_builddir:=.}"
: "${top_srcdir:=.}"

host="$top_builddir/zltk-host"
bundled="$top_builddir/plugins/.libs"
if [ ! -x "$host" ]; then
    echo "FAIL: $host not built"; echo "0 passed, 1 failed"; exit 1
fi
if [ ! -r "$bundled/echo.so" ] || [ ! -r "$bundled/tcp.so" ]; then
    echo "FAIL: bundled plugins missing in $bundled"
    echo "0 passed, 1 failed"; exit 1
fi
for t in timeout socat; do
    if ! command -v $t >/dev/null 2>&1; then
        echo "SKIP: $t(1) not found"; exit 77
    fi
done
host="$(cd "$top_builddir" && pwd)/zltk-host"
bundled=$(cd "$bundled" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-check-unix.XXXXXX") || exit 99
pids=
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

unset ZLTK_PLUGIN_PATH ZLTK_TEST_PLUGIN_TRACE
ZLTK_PLUGIN_SYSTEM_PATH=; export ZLTK_PLUGIN_SYSTEM_PATH
export LC_ALL=C

passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() {
    echo "FAIL: $1: $2"
    for _f in "$tmp"/*.out "$tmp"/*.err; do
        [ -s "$_f" ] && sed "s|^|  ${_f##*/}: |" "$_f"
    done
    failed=$((failed + 1))
}
nap() { sleep 0.1 2>/dev/null || sleep 1; }

# wait_sock PATH: until PATH is a socket (bounded: 10 s).
wait_sock() {
    _i=0
    while [ ! -S "$1" ] && [ $_i -lt 100 ]; do nap; _i=$((_i + 1)); done
    [ -S "$1" ]
}
# wait_gone PID: until PID ended (bounded: 10 s); 0 if it did.
wait_gone() {
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt 100 ]; do
        nap; _i=$((_i + 1))
    done
    ! kill -0 "$1" 2>/dev/null
}
# start NAME ARGS...: zltk-host ARGS in the background; sets pid.
start() {
    _n=$1; shift
    ZLTK_PLUGIN_PATH="$bundled" "$host" "$@" >"$tmp/$_n.out" \
        2>"$tmp/$_n.err" </dev/null &
    pid=$!
    pids="$pids $pid"
}
stop() { kill "$1" 2>/dev/null; wait_gone "$1"; }
run() {
    ZLTK_PLUGIN_PATH="$bundled" timeout 20 "$host" "$@" >"$tmp/run.out" \
        2>"$tmp/run.err"
    rc=$?
}

sock="$tmp/echo.sock"

# 1. --listen unix:PATH answers socat; the file goes at stop.
start listen --listen "unix:$sock"
if ! wait_sock "$sock"; then
    bad "listen unix" "no socket at $sock"
else
    got=$(printf 'hello unix\n' | timeout 10 socat -t 2 - "UNIX-CONNECT:$sock")
    if [ "$got" = "hello unix" ] &&
       grep -q "listening on unix:$sock" "$tmp/listen.err"; then
        ok "--listen unix:PATH echoes to socat and logs the address"
    else
        bad "listen unix" "got '$got'"
    fi
fi

# 2. A second --listen on the live path: address in use, naming it.
run --listen "unix:$sock"
if [ $rc -ne 0 ] && grep -q "unix:$sock: address in use" "$tmp/run.err" &&
   [ -S "$sock" ]; then
    ok "a live socket is address in use; the first keeps its file"
else
    bad "live refused" "exit $rc"
fi

# 3. --connect unix:PATH to our own server.
got=$(printf 'hi\n' | ZLTK_PLUGIN_PATH="$bundled" timeout 10 "$host" \
      --connect "unix:$sock" 2>"$tmp/connect.err")
if [ "$got" = "hi" ]; then
    ok "--connect unix:PATH"
else
    bad "connect unix" "got '$got'"
fi
stop "$pid"
if [ ! -e "$sock" ]; then
    ok "the socket file is removed at stop"
else
    bad "unlink at stop" "$sock is still there"
fi

# 4. A host killed with SIGKILL leaves a stale file: the next replaces it.
start killed --listen "unix:$sock"
wait_sock "$sock"
kill -9 "$pid" 2>/dev/null
wait_gone "$pid"
start stale --listen "unix:$sock"
nap; nap; nap
got=$(printf 'again\n' | timeout 10 socat -t 2 - "UNIX-CONNECT:$sock")
if [ "$got" = "again" ] &&
   grep -q "removed the stale socket file $sock" "$tmp/stale.err"; then
    ok "a stale socket file is replaced"
else
    bad "stale replaced" "got '$got'"
fi
stop "$pid"

# 5. A regular file is never removed.
printf 'precious\n' >"$tmp/file.sock"
run --listen "unix:$tmp/file.sock"
if [ $rc -ne 0 ] && [ "$(cat "$tmp/file.sock")" = "precious" ] &&
   grep -q "not a socket" "$tmp/run.err"; then
    ok "a regular file at the path is refused and kept"
else
    bad "regular file" "exit $rc"
fi

# 6. --connect to socat's UNIX-LISTEN, and to a missing file.
socat "UNIX-LISTEN:$tmp/peer.sock" EXEC:cat >/dev/null 2>&1 &
spid=$!
pids="$pids $spid"
wait_sock "$tmp/peer.sock"
got=$(printf 'to socat\n' | ZLTK_PLUGIN_PATH="$bundled" timeout 10 "$host" \
      --connect "unix:$tmp/peer.sock" 2>"$tmp/connect.err")
if [ "$got" = "to socat" ]; then
    ok "--connect unix:PATH to socat UNIX-LISTEN"
else
    bad "connect to socat" "got '$got'"
fi
kill "$spid" 2>/dev/null
run --connect "unix:$tmp/missing.sock"
if [ $rc -eq 1 ] &&
   grep -q "unix:$tmp/missing.sock: No such file or directory" "$tmp/run.err"
then
    ok "--connect to a missing socket file: exit 1, the path named"
else
    bad "connect missing" "exit $rc"
fi

# 7. unix-mode from a config file.
cat >"$tmp/mode.conf" <<EOF
[host]
pollers = 1

[server.u]
plugin = echo
address = unix:$tmp/mode.sock
unix-mode = 0600
EOF
start mode --config "$tmp/mode.conf" --plugin-dir "$bundled"
if wait_sock "$tmp/mode.sock" &&
   [ "$(stat -c %a "$tmp/mode.sock")" = 600 ]; then
    ok "unix-mode = 0600 applied to the socket file"
else
    bad "unix-mode" "mode $(stat -c %a "$tmp/mode.sock" 2>/dev/null)"
fi
stop "$pid"

# 8. --check-config: too long, directory missing, bad unix-mode.
long=$(printf '%0200d' 0)
cat >"$tmp/bad.conf" <<EOF
[server.long]
plugin = echo
address = unix:/tmp/$long

[server.nodir]
plugin = echo
address = unix:$tmp/no/such/dir/x.sock

[server.mode]
plugin = echo
address = unix:$tmp/m.sock
unix-mode = 999

[server.tcpmode]
plugin = echo
address = 127.0.0.1:0
unix-mode = 0600
EOF
run --check-config --config "$tmp/bad.conf" --plugin-dir "$bundled"
e=$tmp/run.err
if [ $rc -ne 0 ] &&
   grep -q "\[server.long\] address: .*too long: .*at most 107 bytes, this one has 205" "$e" &&
   grep -q "\[server.nodir\] address: the directory $tmp/no/such/dir .*does not exist" "$e" &&
   grep -q "\[server.mode\] unix-mode: '999' is not a file mode" "$e" &&
   grep -q "\[server.tcpmode\] unix-mode: goes with" "$e"; then
    ok "--check-config: path too long, directory missing, bad unix-mode"
else
    bad "check-config" "exit $rc"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
