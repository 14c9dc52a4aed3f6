#!/bin/sh
# End-to-end tests of zltk-host --check-config: configuration file
# validation against the test plugins in tests/plugins (built by make check)
# and the bundled tcp, echo and tls plugins.
# One line per case ("ok: ..." / "FAIL: ..."), then "N passed, M failed".
: "${top_builddir:=.}"
: "${top_srcdir:=.}"

host="$top_builddir/zltk-host"
plugdir="$top_builddir/tests/plugins/.libs"
if [ ! -x "$host" ]; then
    echo "FAIL: $host not built"; echo "0 passed, 1 failed"; exit 1
fi
if [ ! -r "$plugdir/good.so" ] || [ ! -r "$plugdir/good2.so" ] ||
   [ ! -r "$plugdir/initfail.so" ]; then
    echo "FAIL: test plugins missing in $plugdir (run make check)"
    echo "0 passed, 1 failed"; exit 1
fi
# Absolute, so the paths in messages are predictable.
plugdir=$(cd "$plugdir" && pwd)
# The bundled plugins (tcp, echo, tls): [plugin.NAME] defaults, warnings.
bundled="$top_builddir/plugins/.libs"
if [ ! -r "$bundled/tls.so" ] || [ ! -r "$bundled/tcp.so" ] ||
   [ ! -r "$bundled/echo.so" ]; then
    echo "FAIL: bundled plugins missing in $bundled"
    echo "0 passed, 1 failed"; exit 1
fi
bundled=$(cd "$bundled" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-check-host.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Deterministic plugin path: only what each case names; no installed
# zltk's plugin directory either (an empty system path).
unset ZLTK_PLUGIN_PATH ZLTK_TEST_PLUGIN_TRACE
ZLTK_PLUGIN_SYSTEM_PATH=; export ZLTK_PLUGIN_SYSTEM_PATH
export LC_ALL=C

passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() {
    echo "FAIL: $1: $2"
    echo "  command: $cmd (exit $rc)"
    sed 's/^/  stdout: /' "$tmp/out"
    sed 's/^/  stderr: /' "$tmp/err"
    failed=$((failed + 1))
}

# run ARGS...: zltk-host with ARGS, bounded; sets rc, $tmp/out, $tmp/err.
run() {
    cmd="zltk-host $*"
    timeout 20 "$host" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# check CONF ARGS...: --check-config --config CONF --plugin-dir PLUGDIR ARGS
check() {
    conf=$1; shift
    run --check-config --config "$conf" --plugin-dir "$plugdir" "$@"
}

# write NAME: the config on stdin into $tmp/NAME.conf; sets f.
write() { f="$tmp/$1.conf"; cat >"$f"; }

# Error/warning lines of file $f in stderr (fixed-string prefix match).
# The closing tally "zltk-host: FILE: N errors, M warnings" is not a problem
# line; it is left out here and checked once by its own case below.
tally='^zltk-host: .*: [0-9]+ errors?, [0-9]+ warnings?$'
errors() { grep -F "zltk-host: $f: " "$tmp/err" | grep -Ev "$tally"; }
warnings() { grep -F "zltk-host: warning: $f: " "$tmp/err"; }
nerrors() { errors | wc -l | tr -d ' '; }
nwarnings() { warnings | wc -l | tr -d ' '; }

# has_line PREFIX WORD...: a line of stderr contains PREFIX (fixed string)
# and every WORD (extended regexps, case-insensitive).
has_line() {
    _p=$1; shift
    grep -F -- "$_p" "$tmp/err" >"$tmp/lines" || return 1
    for _w; do
        grep -Ei -- "$_w" "$tmp/lines" >"$tmp/lines2" || return 1
        mv "$tmp/lines2" "$tmp/lines"
    done
    return 0
}

# expect_error NAME PREFIX WORD...: exit 1, exactly one error line, that line
# starts with "zltk-host: $f: PREFIX" and contains every WORD, no summary.
expect_error() {
    _name=$1; _pre=$2; shift 2
    if [ "$rc" -ne 1 ]; then bad "$_name" "exit $rc, expected 1"; return; fi
    if grep -q '^configuration OK' "$tmp/out"; then
        bad "$_name" "printed 'configuration OK' despite an error"; return
    fi
    if [ "$(nerrors)" -ne 1 ]; then
        bad "$_name" "$(nerrors) error lines, expected 1"; return
    fi
    if ! has_line "zltk-host: $f: $_pre" "$@"; then
        bad "$_name" "no error line 'zltk-host: $f: $_pre...' containing: $*"
        return
    fi
    ok "$_name"
}

# The warning count of the summary line on stdout ("..., N warnings").
summary_warnings() {
    sed -En 's/^configuration (OK|FAILED): .*[^0-9]([0-9]+) warnings?$/\2/p' \
        "$tmp/out"
}

# expect_warned NAME N [SUMMARY-WORD...]: exit 0, no errors, N warning
# lines, and a "configuration OK:" line that counts N warnings and contains
# every SUMMARY-WORD: the summary counts what was printed.
expect_warned() {
    _name=$1; _nw=$2; shift 2
    if [ "$rc" -ne 0 ]; then bad "$_name" "exit $rc, expected 0"; return; fi
    if [ "$(nerrors)" -ne 0 ] || [ "$(nwarnings)" -ne "$_nw" ]; then
        bad "$_name" "$(nerrors) errors, $(nwarnings) warnings, expected 0 and $_nw"
        return
    fi
    if ! grep '^configuration OK:' "$tmp/out" >"$tmp/sum"; then
        bad "$_name" "no 'configuration OK:' line on stdout"; return
    fi
    if [ "$(summary_warnings)" != "$_nw" ]; then
        bad "$_name" "the summary does not count $_nw warnings"; return
    fi
    for _w; do
        if ! grep -Eq -- "$_w" "$tmp/sum"; then
            bad "$_name" "summary lacks '$_w'"; return
        fi
    done
    ok "$_name"
}

# expect_ok NAME [SUMMARY-WORD...]: exit 0, no errors or warnings, stdout
# has a "configuration OK:" line containing every SUMMARY-WORD.
expect_ok() {
    _n=$1; shift
    expect_warned "$_n" 0 "$@"
}

# ---------------------------------------------------------------- valid

write valid <<EOF
[host]
pollers = 2
workers = 0
backend = poll
log-level = warning

[plugin.good]
greeting = hello
count = 3

[server.a]
plugin = good-echo
address = 127.0.0.1:9000
transport = tcp
backlog = 128
max-connections = 0
send-timeout = 0
idle-timeout = 0
keepalive = 30000
high-water = 65536
low-water = 1024
some-handler-key = anything

[client.b]
plugin = good-client
address = [::1]:9000
connect-timeout = 1500
connect-attempt-delay = 100
reconnect = true
max-attempts = 0
send-timeout = 250
idle-timeout = 600000
keepalive = 0
handler-own = 1
EOF
check "$f"
expect_ok "valid config: 1 server, 1 client" '(^|[^0-9])1 client' \
    '(^|[^0-9])1 server'

# The spec's example, with [plugin.good] (which provides both handlers)
# after the instances that use them: plugins load before instances resolve.
write order <<EOF
[host]
pollers = 1

[server.a]
plugin = good-echo
address = 127.0.0.1:9000

[client.b]
plugin = good-client
address = [::1]:9000

[plugin.good]
EOF
check "$f"
expect_ok "[plugin.good] after the instances using it"

# Client and server handlers with the same name (good2's client good-echo,
# good's server good-echo): each instance gets the handler of its kind.
# good2 also tries four malformed registrations on purpose: four warnings
# the loader logs, counted in the summary.
write kinds <<EOF
[plugin.good]
[plugin.good2]

[server.s1]
plugin = good-echo
address = 127.0.0.1:1

[server.s2]
plugin = good-echo
address = [::]:65535

[client.c1]
plugin = good-echo
address = example.org:80

[client.c2]
plugin = good-client
address = 10.0.0.1:443
reconnect = false
EOF
check "$f"
expect_warned "same handler name as client and server: 2 clients, 2 servers" \
    4 '(^|[^0-9])2 clients' '(^|[^0-9])2 servers'
if has_line "zltk-host: warning: $f: plugin good2: " "malformed registration"
then ok "a plugin's malformed registration: a problem line"
else bad "a plugin's malformed registration" "no problem line"; fi

# Empty file: valid, nothing to run.
write empty </dev/null
check "$f"
expect_ok "empty config" '(^|[^0-9])0 clients' '(^|[^0-9])0 servers'

# [host] plugin-dir instead of --plugin-dir.
write hostdir <<EOF
[host]
plugin-dir = $plugdir

[plugin.good]
EOF
run --check-config --config "$f"
expect_ok "[host] plugin-dir finds plugins"

# plugin = X loads X.so on demand when no loaded plugin has handler X.
mkdir "$tmp/links"
ln -s "$plugdir/good.so" "$tmp/links/good-echo.so"
write ondemand <<EOF
[server.a]
plugin = good-echo
address = 127.0.0.1:7
EOF
run --check-config --config "$f" --plugin-dir "$tmp/links"
expect_ok "plugin = X loads X.so from the plugin path"

# ---------------------------------------------------------------- [host]

write pollers <<EOF
[host]
pollers = many
EOF
check "$f"
expect_error "[host] pollers = many" "[host] pollers: " integer

write pollers-neg <<EOF
[host]
pollers = -1
EOF
check "$f"
expect_error "[host] pollers = -1" "[host] pollers: "

write workers <<EOF
[host]
workers = 2.5
EOF
check "$f"
expect_error "[host] workers = 2.5" "[host] workers: " integer

write backend <<EOF
[host]
backend = select
EOF
check "$f"
expect_error "[host] backend = select" "[host] backend: " select

write loglevel <<EOF
[host]
log-level = loud
EOF
check "$f"
expect_error "[host] log-level = loud" "[host] log-level: " loud

write plugindir <<EOF
[host]
plugin-dir = $tmp/no-such-dir
EOF
check "$f"
expect_error "[host] plugin-dir not a directory" "[host] plugin-dir: " \
    "no-such-dir"

# ---------------------------------------------------------------- instances

write reconnect <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:9000
reconnect = maybe
EOF
check "$f"
expect_error "reconnect = maybe" "[client.b] reconnect: " \
    "boolean" "yes/no" "on/off"

# One boolean grammar for every key: the host's (reconnect) and a layer's
# (tls-verify) take the same words, in any case.
for _b in yes On OFF 1 false "true "; do
    write "bool-$_b" <<EOF
[client.b]
plugin = tcp
address = 127.0.0.1:9000
reconnect = $_b
transport = tls
tls-verify = $_b
tls-server-name = localhost
EOF
    check "$f" -P "$bundled"
    if [ "$rc" -eq 0 ] && [ "$(nerrors)" -eq 0 ]; then
        ok "reconnect = '$_b' and tls-verify = '$_b': one grammar"
    else
        bad "reconnect = '$_b' and tls-verify = '$_b'" "exit $rc, $(nerrors) errors"
    fi
done

write nocolon <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = nocolon
EOF
check "$f"
expect_error "address without port" "[server.a] address: " "HOST:PORT"

write bigport <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:70000
EOF
check "$f"
expect_error "port 70000" "[client.b] address: " 65535

write port0 <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:0
EOF
check "$f"
expect_error "client port 0" "[client.b] address: " 65535

write srvname <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = localhost:9000
EOF
check "$f"
expect_error "server on a host name" "[server.a] address: " "IP"

write badport <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:http
EOF
check "$f"
expect_error "port not a number" "[server.a] address: " port

write v6 <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = [::1:9000
EOF
check "$f"
expect_error "unterminated [V6] address" "[client.b] address: "

write tls <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:443
transport = tls
EOF
check "$f"
expect_error "transport = tls without a tls layer plugin" "[client.b] transport: " \
    tls "tls.so"

write udp <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:53
transport = udp
EOF
check "$f"
expect_error "transport = udp" "[server.a] transport: " udp

write ctimeout <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:1
connect-timeout = 0
EOF
check "$f"
expect_error "connect-timeout = 0" "[client.b] connect-timeout: "

write cdelay <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:1
connect-attempt-delay = soon
EOF
check "$f"
expect_error "connect-attempt-delay = soon" "[client.b] connect-attempt-delay: " soon

write attempts <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:1
max-attempts = -1
EOF
check "$f"
expect_error "max-attempts = -1" "[client.b] max-attempts: "

write stimeout <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
send-timeout = soon
EOF
check "$f"
expect_error "send-timeout = soon" "[server.a] send-timeout: " integer

# idle-timeout and keepalive are times in ms with 0 for off: a switch word
# is refused with what to write instead.
write itimeout <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
idle-timeout = soon
EOF
check "$f"
expect_error "idle-timeout = soon" "[server.a] idle-timeout: " "not a time" \
    milliseconds "0 to turn it off"

write itimeout2 <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
idle-timeout = -5
EOF
check "$f"
expect_error "idle-timeout = -5" "[server.a] idle-timeout: " "out of range"

# A server that can never notice a dead peer is worth a warning.
write nodead <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
send-timeout = 0
idle-timeout = 0
keepalive = 0
EOF
check "$f"
expect_warned "send-timeout, idle-timeout, keepalive all 0: warned" 1
if has_line "zltk-host: warning: $f: [server.a] " "never closed" \
        "give one of them a time"; then
    ok "the all-0 warning says why"
else
    bad "the all-0 warning says why" "no warning line naming the risk"
fi

# send-timeout = 0 above is "off", as idle-timeout = 0 and keepalive = 0:
# absent, it is the 10 s default, and the server is not warned about.
write nodead2 <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
idle-timeout = 0
keepalive = 0
EOF
check "$f"
expect_ok "send-timeout absent (10 s) with idle-timeout, keepalive 0: no warning"

write kalive <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:1
keepalive = true
EOF
check "$f"
expect_error "keepalive = true" "[client.b] keepalive: " "not a time" 30000 \
    "0 to turn it off"

write hwater <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
high-water = 0
EOF
check "$f"
expect_error "high-water = 0" "[server.a] high-water: "

write lwater <<EOF
[plugin.good]
[client.b]
plugin = good-client
address = 127.0.0.1:1
low-water = lots
EOF
check "$f"
expect_error "low-water = lots" "[client.b] low-water: " integer

write backlog <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
backlog = -5
EOF
check "$f"
expect_error "backlog = -5" "[server.a] backlog: "

write maxconn <<EOF
[plugin.good]
[server.a]
plugin = good-echo
address = 127.0.0.1:1
max-connections = x
EOF
check "$f"
expect_error "max-connections = x" "[server.a] max-connections: " integer

write noaddr <<EOF
[plugin.good]
[client.x]
plugin = good-client
EOF
check "$f"
expect_error "missing address" "[client.x] address: " "missing|required"

write noplugin <<EOF
[server.x]
address = 127.0.0.1:9000
EOF
check "$f"
expect_error "missing plugin" "[server.x] plugin: " "missing|required"

# ---------------------------------------------------------------- plugins

# Not found: the message lists every directory searched, in order:
# --plugin-dir, [host] plugin-dir, $ZLTK_PLUGIN_PATH.
mkdir "$tmp/d1" "$tmp/d2" "$tmp/d3"
write notfound <<EOF
[host]
plugin-dir = $tmp/d2

[client.x]
plugin = nosuch
address = 127.0.0.1:9000
EOF
cmd="ZLTK_PLUGIN_PATH=$tmp/d3 zltk-host --check-config --config $f --plugin-dir $tmp/d1"
ZLTK_PLUGIN_PATH="$tmp/d3" timeout 20 "$host" --check-config --config "$f" \
    --plugin-dir "$tmp/d1" >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_error "unknown plugin: not found, directories listed" \
    "[client.x] plugin: " nosuch "not found" "$tmp/d1" "$tmp/d2" "$tmp/d3"
grep -F "not found" "$tmp/err" | head -n 1 >"$tmp/line"
if [ "$rc" -eq 1 ] && [ -s "$tmp/line" ] &&
   awk -v a="$tmp/d1" -v b="$tmp/d2" -v c="$tmp/d3" '
       { i = index($0, a); j = index($0, b); k = index($0, c)
         exit !(i && j && k && i < j && j < k) }' "$tmp/line"; then
    ok "search order: --plugin-dir, [host] plugin-dir, ZLTK_PLUGIN_PATH"
else
    bad "search order" "not listed as --plugin-dir, [host] plugin-dir, ZLTK_PLUGIN_PATH"
fi

# [plugin.NAME] naming a file that does not exist.
write plugnotfound <<EOF
[plugin.nosuch]
EOF
check "$f"
expect_error "[plugin.nosuch] not found" "[plugin.nosuch]" "not found" \
    "$plugdir"

# good.so is found, but registers no server handler named "good".
write nokind <<EOF
[server.x]
plugin = good
address = 127.0.0.1:9000
EOF
check "$f"
expect_error "plugin without a server handler of that name" \
    "[server.x] plugin: " "server handler"

write nokind2 <<EOF
[plugin.good]
[client.x]
plugin = good
address = 127.0.0.1:9000
EOF
check "$f"
expect_error "plugin without a client handler of that name" \
    "[client.x] plugin: " "client handler"

# good-client is a client handler: not usable by a server.
write wrongkind <<EOF
[plugin.good]
[server.x]
plugin = good-client
address = 127.0.0.1:9000
EOF
check "$f"
expect_error "client handler named by a server" "[server.x] plugin: " \
    "good-client" "server handler"

write initfail <<EOF
[plugin.initfail]
EOF
check "$f"
expect_error "[plugin.initfail]" "[plugin.initfail]" "failed to initialise"

# Plugins whose constructors abort, crash or exit: --check-config loads each
# in a probe process first, survives all three and reports each as an error
# naming its file and what happened, in one pass.  (A sanitizer would turn
# the SIGSEGV into its own report and exit(1): let it pass here.)
crashdir="$top_builddir/tests/plugins/crash/.libs"
if [ -r "$crashdir/ctor-abort.so" ]; then
    crashdir=$(cd "$crashdir" && pwd)
    write crash <<EOF
[plugin.ctor-abort]
[plugin.ctor-segv]
[plugin.ctor-exit]
[plugin.good]
EOF
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0" \
    TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}handle_segv=0" \
        timeout 20 "$host" --check-config --config "$f" -P "$crashdir" \
        -P "$plugdir" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    cmd="zltk-host --check-config --config $f -P $crashdir -P $plugdir"
    if [ "$rc" -ne 1 ]; then
        bad "crashing constructors" "exit $rc, expected 1"
    elif [ "$(nerrors)" -ne 3 ] ||
        ! grep -q "^configuration FAILED: $f: 3 errors" "$tmp/out"; then
        bad "crashing constructors" "$(nerrors) error lines, expected 3"
    elif ! has_line "zltk-host: $f: [plugin.ctor-abort]" \
            "$crashdir/ctor-abort.so" "SIGABRT" "constructor" ||
         ! has_line "zltk-host: $f: [plugin.ctor-segv]" \
            "$crashdir/ctor-segv.so" "SIGSEGV" ||
         ! has_line "zltk-host: $f: [plugin.ctor-exit]" \
            "$crashdir/ctor-exit.so" "exit\(3\)"; then
        bad "crashing constructors" "an error line lacks its file or cause"
    else
        ok "crashing constructors: three errors naming the files, summary"
    fi
else
    bad "crashing constructors" "no $crashdir/ctor-abort.so (run make check)"
fi

# ---------------------------------------------------------------- warnings

write warn <<EOF
[host]
frobnicate = 1

[bogus]
x = 1

[plugin.good]
anything-goes = yes

[server.a]
plugin = good-echo
address = 127.0.0.1:9000
EOF
check "$f"
if [ "$rc" -ne 0 ]; then
    bad "warnings alone" "exit $rc, expected 0"
elif [ "$(nerrors)" -ne 0 ]; then
    bad "warnings alone" "error lines for a config with only warnings"
elif [ "$(nwarnings)" -ne 2 ]; then
    bad "warnings alone" "$(nwarnings) warning lines, expected 2"
elif ! has_line "zltk-host: warning: $f: [host] frobnicate: " "unknown key"; then
    bad "warnings alone" "no '[host] frobnicate: unknown key' warning"
elif ! has_line "zltk-host: warning: $f: [bogus]" "unknown group"; then
    bad "warnings alone" "no '[bogus] ... unknown group' warning"
elif ! grep -q '^configuration OK:' "$tmp/out"; then
    bad "warnings alone" "no 'configuration OK:' line"
else
    ok "warnings alone: exit 0, unknown key and unknown group"
fi

# ---------------------------------------------------------------- defaults

# Keys of a handler or a layer in [plugin.NAME] are defaults for every
# instance that uses that plugin's handler or layer.

# [client.NAME] of the tcp handler over tls, to an address never dialled.
tls_client() {
    printf '[client.%s]\nplugin = tcp\naddress = 127.0.0.1:4433\ntransport = tls\n' "$1"
}

write defca <<EOF
[plugin.tls]
tls-ca = $tmp/no-such-ca.pem

$(tls_client a)
EOF
check "$f" -P "$bundled"
expect_error "[plugin.tls] tls-ca: the default is used (missing file)" \
    "[plugin.tls] tls-ca: " "no-such-ca\.pem" "default used by \[client\.a\]"

write defcaown <<EOF
[plugin.tls]
tls-ca = $tmp/no-such-ca.pem

$(tls_client a)
tls-ca = $tmp/own-ca.pem
EOF
check "$f" -P "$bundled"
expect_error "[client.a] tls-ca overrides [plugin.tls] tls-ca" \
    "[client.a] tls-ca: " "own-ca\.pem"
if grep -Fq "no-such-ca" "$tmp/err"; then
    bad "an overridden default is not read" "no-such-ca.pem mentioned"
else
    ok "an overridden default is not read"
fi

# One instance overrides a bad default, the other takes it.
write defminv <<EOF
[plugin.tls]
tls-min-version = 1.1

$(tls_client a)
tls-min-version = 1.3

$(tls_client b)
EOF
check "$f" -P "$bundled"
expect_error "[plugin.tls] tls-min-version: only where not overridden" \
    "[plugin.tls] tls-min-version: " "'1\.1'" "default used by \[client\.b\]"

write defbool <<EOF
[plugin.tls]
tls-verify = maybe

$(tls_client a)
EOF
check "$f" -P "$bundled"
expect_error "[plugin.tls] tls-verify = maybe" "[plugin.tls] tls-verify: " \
    maybe "boolean|true or false" "\[client\.a\]"

# An invalid cipher list names the key, the value and the part at fault
# (OpenSSL alone would skip the misspelt name, or read "no TLS 1.3").
write ciphers <<EOF
$(tls_client a)
tls-ciphers = ECDHE-RSA-AES128-GCM-SHA265:ECDHE+AESGCM
EOF
check "$f" -P "$bundled"
expect_error "[client.a] tls-ciphers with a misspelt suite" \
    "[client.a] tls-ciphers: " "'ECDHE-RSA-AES128-GCM-SHA265' selects no"

write suites <<EOF
$(tls_client a)
tls-ciphersuites = TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM
EOF
check "$f" -P "$bundled"
expect_error "[client.a] tls-ciphersuites with an unknown suite" \
    "[client.a] tls-ciphersuites: " "'TLS_AES_512_GCM' is not a TLS 1.3"

# A handler's key: tcp's mode.
write defmode <<EOF
[plugin.tcp]
mode = weird

[client.a]
plugin = tcp
address = 127.0.0.1:4433
EOF
check "$f" -P "$bundled"
expect_error "[plugin.tcp] mode = weird (a handler's default)" \
    "[plugin.tcp] mode: " weird "\[client\.a\]"

# Defaults are not unknown keys, and a layer's default is only read with
# that transport ([client.b] is plain tcp).  A default that an instance
# does not read passes by quietly: tls-ca on the server, and on a client
# that pins.
write defok <<EOF
[plugin.tls]
tls-min-version = 1.3
tls-handshake-timeout = 5000
tls-ca = $tmp/no-such-ca.pem

[plugin.tcp]
send = hi\n

[server.s]
plugin = echo
address = 127.0.0.1:0
transport = tls
tls-cert = ephemeral

[client.a]
plugin = tcp
address = @s
transport = tls
tls-pin = @s

[client.b]
plugin = tcp
address = 127.0.0.1:4433
EOF
check "$f" -P "$bundled"
expect_ok "[plugin.tls] and [plugin.tcp] defaults: accepted, no warnings" \
    '(^|[^0-9])2 clients' '(^|[^0-9])1 server' '(^|[^0-9])0 warnings'

# The same client-only key in the server's own group: a warning.
write ownca <<EOF
[server.s]
plugin = echo
address = 127.0.0.1:0
transport = tls
tls-cert = ephemeral
tls-ca = $tmp/no-such-ca.pem
EOF
check "$f" -P "$bundled"
if has_line "zltk-host: warning: $f: tls: server.s: " "tls-ca applies to clients only"
then expect_warned "tls-ca in a server's own group: a counted warning" 1
else bad "tls-ca in a server's own group" "no 'applies to clients only' warning"; fi

# ---------------------------------------------------------------- plugin warnings

# A warning the tls layer logs while its instance is created is a problem
# line like the host's own, and the summary counts it, whatever the level.
write tlswarn <<EOF
[client.a]
plugin = tcp
address = 127.0.0.1:4433
transport = tls
tls-verify = false
EOF
for _lvl in warning error; do
    check "$f" -P "$bundled" --log-level "$_lvl"
    _n="tls-verify = false: a counted warning (--log-level $_lvl)"
    if has_line "zltk-host: warning: $f: tls: client.a: " "tls-verify = false"
    then expect_warned "$_n" 1
    else bad "$_n" "no 'tls: client.a: tls-verify = false' warning line"; fi
done

# The summary counts what was printed: the host's warning, the layer's (a
# client key on a server) and an error.
write mixwarn <<EOF
[host]
frobnicate = 1

[server.s]
plugin = echo
address = 127.0.0.1:0
transport = tls
tls-cert = ephemeral
tls-pin = @s

[client.a]
plugin = tcp
address = 127.0.0.1:1
transport = tls
tls-min-version = 1.0
EOF
check "$f" -P "$bundled"
_n="the summary counts plugin warnings: 1 error, 2 warnings"
if [ "$rc" -ne 1 ]; then
    bad "$_n" "exit $rc, expected 1"
elif [ "$(nerrors)" -ne 1 ] || [ "$(nwarnings)" -ne 2 ]; then
    bad "$_n" "$(nerrors) errors, $(nwarnings) warnings, expected 1 and 2"
elif ! has_line "zltk-host: warning: $f: tls: server.s: " "tls-pin"; then
    bad "$_n" "no 'tls: server.s: tls-pin' warning line"
elif ! grep -Eq '^configuration FAILED: .*[^0-9]1 error, 2 warnings$' \
        "$tmp/out"; then
    bad "$_n" "the summary is not '1 error, 2 warnings'"
else
    ok "$_n"
fi

# ---------------------------------------------------------------- all errors

write three <<EOF
[host]
pollers = many

[plugin.good]

[client.b]
plugin = good-client
address = nocolon
reconnect = maybe
EOF
check "$f"
if [ "$rc" -ne 1 ]; then
    bad "three mistakes" "exit $rc, expected 1"
elif [ "$(nerrors)" -ne 3 ]; then
    bad "three mistakes" "$(nerrors) error lines, expected 3"
elif ! has_line "zltk-host: $f: [host] pollers: " ||
     ! has_line "zltk-host: $f: [client.b] address: " ||
     ! has_line "zltk-host: $f: [client.b] reconnect: "; then
    bad "three mistakes" "not one line for each mistake"
else
    ok "three mistakes: three error lines, exit 1"
fi

# Spec: stderr holds the problems, one line each.  A tally in the very
# format of a file-level error ("zltk-host: FILE: PROBLEM") reads as a
# fourth error to anything that parses the lines.
if grep -Eq "$tally" "$tmp/err"; then
    bad "stderr has only problem lines" \
        "tally line in the format of a file-level error"
else
    ok "stderr has only problem lines"
fi

# ---------------------------------------------------------------- file level

f="$tmp/does-not-exist.conf"
check "$f"
if [ "$rc" -ne 1 ]; then
    bad "missing file" "exit $rc, expected 1"
elif ! grep -Fq "zltk-host: $f: " "$tmp/err"; then
    bad "missing file" "no 'zltk-host: $f: ...' line"
else
    ok "missing file"
fi

write syntax <<EOF
[host]
pollers = 1
this is not a key file
EOF
check "$f"
if [ "$rc" -ne 1 ]; then
    bad "syntax error" "exit $rc, expected 1"
elif ! grep -Fq "zltk-host: $f: " "$tmp/err"; then
    bad "syntax error" "no 'zltk-host: $f: ...' line"
elif grep -q '^configuration OK' "$tmp/out"; then
    bad "syntax error" "printed 'configuration OK'"
else
    ok "syntax error"
fi

# ---------------------------------------------------------------- usage

f="$tmp/valid.conf"
# The built-in configuration (echo server + tcp client) checks clean
# against the bundled plugins.
run --check-config --plugin-dir "$bundled"
if [ "$rc" -eq 0 ] && grep -q '^configuration OK: built-in configuration' "$tmp/out"
then ok "--check-config without --config checks the built-in configuration"
else bad "--check-config without --config" "exit $rc, expected 0 and OK"; fi

# Shortcut options are values, never configuration text: a newline in a
# --tls-* value cannot add a group or a key.  The certificate and key live
# in a directory whose name carries a newline and a whole [server.evil]
# group; they are used from there, exactly as named.
nl="$tmp/certs
[server.evil]
plugin = echo
address = 127.0.0.1:1"
if mkdir -p "$nl" && openssl req -x509 -newkey ec \
        -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -days 2 -keyout "$nl/key.pem" -out "$nl/cert.pem" >/dev/null 2>&1
then
    run --check-config --listen tls://127.0.0.1:0 --tls-cert "$nl/cert.pem" \
        --tls-key "$nl/key.pem" -P "$bundled"
    if [ "$rc" -eq 0 ] && grep -q '^configuration OK: --listen: 0 clients, 1 server,' "$tmp/out" &&
       ! grep -q 'evil' "$tmp/err"
    then ok "--tls-cert with a newline: carried exactly, no [server.evil]"
    else bad "--tls-cert with a newline" "exit $rc, expected 0 and 1 server"; fi
else
    bad "--tls-cert with a newline" "cannot make a certificate with openssl"
fi
run --check-config --connect tls://127.0.0.1:9 -P "$bundled" \
    --tls-ca "$tmp/none.pem
tls-verify = false"
if [ "$rc" -eq 1 ] && ! grep -q 'NOT checked' "$tmp/err" &&
   grep -Fq "[client.connect] tls-ca: cannot read $tmp/none.pem\\ntls-verify = false: " "$tmp/err" &&
   [ "$(grep -c . "$tmp/err")" -eq 1 ]
then ok "--tls-ca with a newline: no tls-verify = false, one problem line"
else bad "--tls-ca with a newline" "exit $rc, expected 1, one escaped line, verification on"; fi

run --check-config --config "$f" --no-such-option
if [ "$rc" -eq 2 ]; then ok "unknown option: exit 2"
else bad "unknown option" "exit $rc, expected 2"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
