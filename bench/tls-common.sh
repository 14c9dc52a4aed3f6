# bench/tls-common.sh — sourced by run-tls.sh and run-tls-idle.sh (set
# name to the script's name first): a scratch directory $out holding a
# throw-away P-256 certificate (cert.pem, key.pem) for localhost and
# 127.0.0.1, the server's PID in $spid with stop_server() and the traps
# that end it, and a first listening $port below the ephemeral range (the
# clients' thousands of connections take ports from that range).
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
