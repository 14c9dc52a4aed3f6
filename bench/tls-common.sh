# bench/tls-common.sh — sourced by run-tls.sh and run-tls-idle.sh (set
# name to the script's name, dir to the built bench programs and, for
# "before", before to another build directory first): a scratch directory
# $out holding a throw-away P-256 certificate (cert.pem, key.pem) for
# localhost and 127.0.0.1, the server's PID in $spid with stop_server() and
# the traps that end it, a first listening $port below the ephemeral range
# (the clients' thousands of connections take ports from that range), and
# start_server NAME, which starts one of the servers on it.
out=$(mktemp -d)
spid=
stop_server() {
    if [ -n "$spid" ]; then
        kill "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        spid=
    fi
}
trap 'stop_server; rm -rf "$out"' EXIT
trap 'exit 1' INT TERM
port=$((10000 + $$ % 20000))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/key.pem" -out "$out/cert.pem" -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 ||
    { echo "$name: openssl req failed" >&2; exit 1; }

# One server on $port, in the background, its output in $out/NAME.srv:
# baseline (bench/tls-baseline), zltk (this build's zltk-host with the echo
# plugin over tls, one poller), before (the same from $before) or s_server
# (openssl s_server -www).  Sets spid; fails if it does not listen within
# 5 s (or exits first: the port is taken).
try_server() { # name
    case $1 in
    baseline) exec "$dir/tls-baseline" --port "$port" --cert "$out/cert.pem" \
                  --key "$out/key.pem" ;;
    zltk|before)
        zdir="$dir/.."
        [ "$1" = zltk ] || zdir=$before
        exec "$zdir/zltk-host" --listen "tls://127.0.0.1:$port" \
            --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
            --pollers 1 --workers 1 -P "$zdir/plugins/.libs" ;;
    s_server) exec openssl s_server -accept "127.0.0.1:$port" \
                  -cert "$out/cert.pem" -key "$out/key.pem" -tls1_3 -www ;;
    esac </dev/null >"$out/$1.srv" 2>&1 &
    spid=$!
    for _ in $(seq 1 50); do
        grep -qE 'listening|ACCEPT' "$out/$1.srv" 2>/dev/null && return 0
        kill -0 "$spid" 2>/dev/null || break  # exited: port taken?
        sleep 0.1
    done
    stop_server
    return 1
}

start_server() { # name: on $port or one of the next 4; exits if it cannot
    for _ in 1 2 3 4 5; do
        try_server "$1" && return 0
        port=$((port + 1))
    done
    echo "$name: $1 did not start:" >&2
    cat "$out/$1.srv" >&2
    exit 1
}
