#!/bin/sh
# The examples against real peers, on loopback: tcp-client against a socat
# echo peer and against openssl s_server (a CA-signed certificate made
# here: data flows with --ca; the wrong CA or server name exits 1 naming
# the reason), tcp-server against socat and openssl s_client over TLS.
# SIGTERM must end both with status 0.
#
# Usage: check-examples.sh [DIR]
#   DIR (or $ZLTK_EXAMPLES_DIR) holds tcp-client/tcp-client and
#   tcp-server/tcp-server.  Without either: the build's examples
#   ($top_builddir/examples, built by make check) with the build's tls
#   plugin (ZLTK_PLUGIN_PATH=$top_builddir/plugins/.libs).  With DIR the
#   plugin path is left as it is: programs built against an installed zltk
#   find its tls plugin in the installed plugin directory.
# Every peer listens on a port the kernel picks (port 0), every process is
# bounded in time and stopped by its pid.  One line per case ("ok: ..." /
# "FAIL: ..."), then "N passed, M failed".
: "${top_builddir:=.}"
: "${top_srcdir:=.}"
export LC_ALL=C

dir=${1:-${ZLTK_EXAMPLES_DIR:-}}
if [ -z "$dir" ]; then
    dir="$top_builddir/examples"
    ZLTK_PLUGIN_PATH=$(cd "$top_builddir/plugins/.libs" 2>/dev/null && pwd)
    export ZLTK_PLUGIN_PATH
fi
client="$dir/tcp-client/tcp-client"
server="$dir/tcp-server/tcp-server"
for p in "$client" "$server"; do
    if [ ! -x "$p" ]; then
        echo "FAIL: $p not built (make check builds it)"
        echo "0 passed, 1 failed"; exit 1
    fi
done
for t in timeout socat openssl; do
    if ! command -v $t >/dev/null 2>&1; then
        echo "SKIP: $t(1) not found"; exit 77
    fi
done
unset ZLTK_LOG_LEVEL

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-check-examples.XXXXXX") || exit 99
nap() { sleep 0.1 2>/dev/null || sleep 1; }

# ------------------------------------------------------- background jobs
# bg NAME CMD...: CMD in the background, standard input from $bgin
# (default /dev/null), output in $tmp/NAME.out and .err; its pid (sh execs
# CMD) in $tmp/NAME.pid, its exit status in $tmp/NAME.rc once it ends.
live=
bg() {
    _b=$1; shift
    rm -f "$tmp/$_b.pid" "$tmp/$_b.rc"
    (
        sh -c 'echo $$ >"$0.pid.tmp" && mv "$0.pid.tmp" "$0.pid" &&
               exec "$@"' "$tmp/$_b" "$@" \
            <"${bgin:-/dev/null}" >"$tmp/$_b.out" 2>"$tmp/$_b.err"
        echo $? >"$tmp/$_b.rc.tmp" && mv "$tmp/$_b.rc.tmp" "$tmp/$_b.rc"
    ) &
    live="$live $_b"
    _i=0
    while [ ! -s "$tmp/$_b.pid" ] && [ $_i -lt 100 ]; do nap; _i=$((_i + 1)); done
}
running() { [ -s "$tmp/$1.pid" ] && [ ! -e "$tmp/$1.rc" ]; }
sig() { running "$1" && kill "-$2" "$(cat "$tmp/$1.pid")" 2>/dev/null; }

# wait_for NAME out|err STRING SECS: STRING (fixed) appears in job NAME's
# output; false after SECS, or once NAME has ended without it.
wait_for() {
    _i=0
    while [ $_i -lt $(($4 * 10)) ]; do
        grep -Fq -- "$3" "$tmp/$1.$2" 2>/dev/null && return 0
        [ -e "$tmp/$1.rc" ] && break
        nap; _i=$((_i + 1))
    done
    grep -Fq -- "$3" "$tmp/$1.$2" 2>/dev/null
}

# reap NAME SECS: wait up to SECS for NAME to end (then SIGKILL it); sets
# rc (the exit status, or "killed").
reap() {
    _i=0
    while running "$1" && [ $_i -lt $(($2 * 10)) ]; do nap; _i=$((_i + 1)); done
    if running "$1"; then
        sig "$1" KILL
        while running "$1"; do nap; done
        rc=killed
    else
        rc=$(cat "$tmp/$1.rc" 2>/dev/null || echo '?')
    fi
    live=$(echo " $live " | sed "s/ $1 / /g")
}

# stop NAME: SIGTERM, then reap within 10 s.
stop() { sig "$1" TERM; reap "$1" 10; }

cleanup() {
    exec 3>&- 2>/dev/null
    for _c in $live; do sig "$_c" TERM; done
    for _c in $live; do reap "$_c" 3; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------- reporting
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
# bad CASE WHY JOB...: the failure, with each job's output.
bad() {
    echo "FAIL: $1: $2"; shift 2
    for _j; do
        for _f in out err; do
            [ -s "$tmp/$_j.$_f" ] && sed "s/^/  $_j.$_f: /" "$tmp/$_j.$_f"
        done
    done
    failed=$((failed + 1))
}

# port_of NAME REGEXP-PREFIX: the port after "PREFIX127.0.0.1:" in the
# job's standard error or output.
port_of() {
    cat "$tmp/$1.err" "$tmp/$1.out" 2>/dev/null |
        sed -n "s/.*$2127\\.0\\.0\\.1:\\([0-9][0-9]*\\).*/\\1/p" | head -n 1
}
# listen NAME PREFIX CMD...: start a listener on port 0 as job NAME and
# wait for the line that says its port; sets port.
listen() {
    _n=$1 _p=$2; shift 2
    bg "$_n" "$@"
    port= _i=0
    while [ -z "$port" ] && running "$_n" && [ $_i -lt 100 ]; do
        nap; _i=$((_i + 1)); port=$(port_of "$_n" "$_p")
    done
    [ -n "$port" ]
}

# ------------------------------------------------------- certificates
# A CA, a server certificate it signs for localhost and 127.0.0.1, and a
# second CA that signed nothing here.
certs() {
    cd "$tmp" || return 1
    for ca in ca other-ca; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -keyout $ca.key -out $ca.pem -days 2 -subj "/CN=zltk $ca" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign || return 1
    done
    printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' >server.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj /CN=localhost &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1 \
        -days 2 -extfile server.ext -out server.pem
}
if ! (certs) >"$tmp/certs.log" 2>&1; then
    echo "FAIL: openssl cannot make the test certificates:"
    sed 's/^/  /' "$tmp/certs.log"
    echo "0 passed, 1 failed"; exit 1
fi

# s_server, one connection, its standard input on fd 3 (a FIFO held open
# here, so that it does not see end of file).
mkfifo "$tmp/to-s_server" || exit 99
exec 3<>"$tmp/to-s_server"
s_server() {
    bgin="$tmp/to-s_server" listen "$1" 'ACCEPT ' openssl s_server \
        -accept 127.0.0.1:0 -cert "$tmp/server.pem" -key "$tmp/server.key" \
        -naccept 1
}

socat_echo() {
    listen "$1" 'listening on AF=2 ' socat -d -d \
        "TCP4-LISTEN:${2:-0},bind=127.0.0.1,reuseaddr" EXEC:cat
}
lines() { grep -Fxc -- "$2" "$tmp/$1.out" 2>/dev/null; }

# ------------------------------------------------------- tcp-client
if ! socat_echo peer; then
    bad "socat listens" "no port" peer
else
    bg cl "$client" 127.0.0.1 "$port"
    if wait_for cl out "hello from zltk" 10 &&
       wait_for cl err "connected to 127.0.0.1:$port" 5; then
        ok "tcp-client: its hello comes back from a socat echo peer"
    else
        bad "tcp-client against socat" "no hello echoed" cl peer
    fi
    if wait_for cl out "tick 1" 10; then ok "tcp-client: a tick from on_manager"
    else bad "tcp-client ticks" "no 'tick 1' echoed" cl; fi
    # The peer goes away and comes back on the same port.
    stop peer
    if wait_for cl err "reconnecting" 10 && socat_echo peer "$port" &&
       wait_for cl err "reconnected to 127.0.0.1:$port" 20 &&
       wait_for cl out "tick 1" 1 && _i=0 &&
       while [ "$(lines cl 'hello from zltk')" != 2 ] && [ $_i -lt 50 ]; do
           nap; _i=$((_i + 1)); done && [ $_i -lt 50 ]; then
        ok "tcp-client: reconnects when the peer comes back, says hello again"
    else
        bad "tcp-client reconnect" "no reconnection or no second hello" cl peer
    fi
    stop cl
    if [ "$rc" = 0 ]; then ok "tcp-client: SIGTERM exits 0"
    else bad "tcp-client SIGTERM" "exit $rc, expected 0" cl; fi
    stop peer
fi

# tls_client NAME HOST ARGS...: tcp-client --tls ARGS HOST against a fresh
# s_server (job NAME-srv), as job NAME.
tls_client() {
    _tn=$1 _th=$2; shift 2
    if ! s_server "$_tn-srv"; then
        bad "s_server listens" "no port" "$_tn-srv"; return 1
    fi
    bg "$_tn" "$client" --tls "$@" "$_th" "$port"
}
for h in localhost 127.0.0.1; do
    tls_client tc $h --ca "$tmp/ca.pem" || continue
    printf 'hello from s_server\n' >&3
    if wait_for tc-srv out "hello from zltk" 10 &&
       wait_for tc out "hello from s_server" 10; then
        ok "tcp-client --tls --ca: data flows both ways with s_server ($h)"
    else
        bad "tcp-client --tls --ca ($h)" "no data" tc tc-srv
    fi
    stop tc
    if [ "$rc" = 0 ]; then ok "tcp-client --tls: SIGTERM exits 0 ($h)"
    else bad "tcp-client --tls SIGTERM ($h)" "exit $rc, expected 0" tc; fi
    reap tc-srv 5
done

# check_fail NAME CASE REASON: job NAME ends by itself with status 1 and
# its last line of standard error names REASON.
check_fail() {
    reap "$1" 20
    if [ "$rc" != 1 ]; then
        bad "$2" "exit $rc, expected 1" "$1" "$1-srv"
    elif ! tail -n 1 "$tmp/$1.err" | grep -q "^tcp-client: .*$3"; then
        bad "$2" "the last line does not name '$3'" "$1" "$1-srv"
    else
        ok "$2: exit 1, $(tail -n 1 "$tmp/$1.err" | sed 's/.*failed: //')"
    fi
    reap "$1-srv" 5
}
if tls_client tw localhost --ca "$tmp/other-ca.pem"; then
    check_fail tw "tcp-client --tls, the wrong CA" "certificate verify failed"
fi
if tls_client tn localhost --ca "$tmp/ca.pem" --server-name wrong.example; then
    check_fail tn "tcp-client --tls, the wrong server name" "hostname mismatch"
fi
if tls_client td localhost; then
    check_fail td "tcp-client --tls, no --ca (system CAs)" "certificate verify failed"
fi

# ------------------------------------------------------- tcp-server
if ! listen srv 'listening on ' "$server" 127.0.0.1 0; then
    bad "tcp-server listens" "no port" srv
else
    printf 'ping\n' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$port" \
        >"$tmp/reply" 2>"$tmp/reply.err"
    if [ "$(cat "$tmp/reply")" = ping ] &&
       wait_for srv err "closed after echoing 5 bytes" 5; then
        ok "tcp-server: a socat client gets its line back, 5 bytes logged"
    else
        bad "tcp-server against socat" "reply '$(cat "$tmp/reply")'" srv reply
    fi
    # A peer that only writes: the server stops reading from it.
    bg hog socat -u OPEN:/dev/zero "TCP:127.0.0.1:$port"
    if wait_for srv err "paused reading" 20; then
        ok "tcp-server: backpressure, a peer that does not read is paused"
    else
        bad "tcp-server backpressure" "no 'paused reading'" srv hog
    fi
    stop hog
    stop srv
    if [ "$rc" = 0 ]; then ok "tcp-server: SIGTERM exits 0"
    else bad "tcp-server SIGTERM" "exit $rc, expected 0" srv; fi
fi

if ! listen ts 'listening on ' "$server" --tls --cert "$tmp/server.pem" \
        --key "$tmp/server.key" 127.0.0.1 0; then
    bad "tcp-server --tls listens" "no port" ts
else
    mkfifo "$tmp/to-s_client" || exit 99
    exec 4<>"$tmp/to-s_client"
    bgin="$tmp/to-s_client" bg sc openssl s_client -connect "127.0.0.1:$port" \
        -servername localhost -verify_hostname localhost \
        -CAfile "$tmp/ca.pem" -verify_return_error
    printf 'ping over tls\n' >&4
    if wait_for sc out "ping over tls" 10 &&
       grep -q "Verify return code: 0 (ok)" "$tmp/sc.out"; then
        ok "tcp-server --tls: s_client verifies it and gets its line back"
    else
        bad "tcp-server --tls against s_client" "no verified echo" sc ts
    fi
    exec 4>&-
    reap sc 10
    if wait_for ts err "closed after echoing 14 bytes" 10; then
        ok "tcp-server --tls: the session's 14 bytes logged at close"
    else
        bad "tcp-server --tls close" "no byte count" ts
    fi
    stop ts
    if [ "$rc" = 0 ]; then ok "tcp-server --tls: SIGTERM exits 0"
    else bad "tcp-server --tls SIGTERM" "exit $rc, expected 0" ts; fi
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
