#!/bin/sh
# tools/tls-audit.sh [BUILDDIR] — audit `zltk-host --listen tls://` with
# testssl.sh (and sslscan, when installed), as an outside test pass does.
#
# Two servers on 127.0.0.1, each with the default TLS settings:
#   ec   --listen tls:// alone: the ephemeral EC P-256 certificate
#   rsa  --tls-cert/--tls-key: an RSA 2048 certificate for 127.0.0.1 and
#        localhost, from a throwaway RSA CA made here with openssl(1)
# testssl.sh runs its default checks against each (protocols, cipher
# categories, forward secrecy, server preference, server defaults,
# vulnerabilities, every cipher, client simulations), trusting the server's
# own certificate (--add-ca), so that "chain of trust" judges the chain and
# not our choice of CA.  The audit fails if any line says "NOT ok" or
# "VULNERABLE", except one: "NOT ok -- neither CRL nor OCSP URI provided",
# which testssl prints for every certificate without revocation URIs, as
# any self-signed or private-CA certificate is; it is about where the
# certificate came from, not about zltk's TLS settings, and is shown as a
# note.  It also fails unless testssl says the server's cipher order wins,
# and if CBC or non-forward-secret suites are offered.
#
# BUILDDIR (default: _build, else .) holds zltk-host and plugins/.libs.
# ZLTK_AUDIT_KEYS="ec rsa" chooses the servers; ZLTK_AUDIT_OUT=DIR keeps
# testssl's full reports there (testssl-ec.txt, testssl-rsa.txt).  Needs testssl (Debian
# package testssl.sh) and openssl; sslscan is optional.  Everything stays on
# loopback, nothing is fetched (no DNS, no OCSP, no CRL).  About 75 s per
# server on a quiet machine: too slow for make check.  Exit 0 when every
# server passes, 1 when one fails, 2 when the audit could not run.
set -u
cd "$(dirname "$0")/.."
bdir=${1:-}
if [ -z "$bdir" ]; then
    if [ -x _build/zltk-host ]; then bdir=_build; else bdir=.; fi
fi
zhost=$bdir/zltk-host
plugdir=$bdir/plugins/.libs
keys=${ZLTK_AUDIT_KEYS:-ec rsa}

die() { echo "tls-audit: $*" >&2; exit 2; }
[ -x "$zhost" ] || die "$zhost is missing: build first (or give BUILDDIR)"
[ -f "$plugdir/tls.so" ] || die "$plugdir/tls.so is missing: build first"
command -v openssl >/dev/null || die "openssl is not on PATH"
testssl=$(command -v testssl || command -v testssl.sh) ||
    die "testssl is not on PATH: apt-get install testssl.sh"

tmp=$(mktemp -d /tmp/zltk-tls-audit-XXXXXX) || die "mktemp failed"
hpid=
cleanup() {
    if [ -n "$hpid" ]; then kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# An RSA CA and an RSA server certificate signed by it.
rsa_certs() {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" \
        -out "$tmp/ca.pem" -days 90 -subj "/CN=zltk audit CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null &&
    openssl req -newkey rsa:2048 -nodes -keyout "$tmp/rsa.key" \
        -out "$tmp/rsa.csr" -subj "/CN=localhost" 2>/dev/null &&
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        "extendedKeyUsage=serverAuth" \
        "keyUsage=critical,digitalSignature,keyEncipherment" >"$tmp/rsa.ext" &&
    openssl x509 -req -in "$tmp/rsa.csr" -CA "$tmp/ca.pem" \
        -CAkey "$tmp/ca.key" -CAcreateserial -days 90 \
        -extfile "$tmp/rsa.ext" -out "$tmp/rsa.pem" 2>/dev/null
}

# start_host ARGS...: zltk-host --listen tls://127.0.0.1:0 ARGS in the
# background; port receives the port it logged.
start_host() {
    "$zhost" -P "$plugdir" -p 1 --listen tls://127.0.0.1:0 "$@" \
        >"$tmp/host.log" 2>&1 &
    hpid=$!
    port=
    for _i in $(seq 1 100); do
        port=$(sed -n 's/.*echo listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' \
            "$tmp/host.log")
        [ -n "$port" ] && return 0
        kill -0 "$hpid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$tmp/host.log" >&2
    die "zltk-host did not start listening"
}

stop_host() {
    kill "$hpid" 2>/dev/null
    wait "$hpid" 2>/dev/null
    hpid=
}

fails=0
audit() { # audit NAME CAFILE
    name=$1 ca=$2 out=$tmp/testssl-$1.txt bad=0
    echo "== $name: testssl against zltk-host --listen tls://127.0.0.1:$port"
    t0=$(date +%s)
    timeout 900 "$testssl" --quiet --color 0 --warnings off --nodns none \
        --connect-timeout 5 --openssl-timeout 10 --add-ca "$ca" \
        "127.0.0.1:$port" >"$out" 2>&1
    trc=$?
    t1=$(date +%s)
    [ -n "${ZLTK_AUDIT_OUT:-}" ] && cp "$out" "$ZLTK_AUDIT_OUT/"
    echo "   testssl took $((t1 - t0)) s (exit $trc)"
    grep -E 'Has server cipher order|Obsolete CBC|Strong encryption|PFS is offered|Negotiated cipher  |Chain of trust|LUCKY13|ROBOT|TLS 1(\.[0-3])? |SSLv' \
        "$out" | sed 's/^/   /'
    if grep -F 'neither CRL nor OCSP URI provided' "$out" >/dev/null; then
        echo "   note: no CRL or OCSP URI in the certificate (testssl: NOT ok;" \
             "a property of the certificate, not of the TLS settings)"
    fi
    if grep -E 'NOT ok|VULNERABLE' "$out" |
            grep -vF 'neither CRL nor OCSP URI provided' >"$tmp/bad"; then
        sed 's/^/   FAIL: /' "$tmp/bad"
        bad=1
    fi
    if ! grep -Eq 'Has server cipher order\? +yes' "$out"; then
        echo "   FAIL: the server's cipher order does not win"; bad=1
    fi
    if ! grep -Eq 'Obsolete CBC ciphers.*not offered' "$out"; then
        echo "   FAIL: CBC suites are offered"; bad=1
    fi
    # The cipher table: hexcode, name, key exchange ("RSA": no forward
    # secrecy), ...
    if grep -Eq '^ x[0-9a-f]+ +[^ ]+ +RSA ' "$out"; then
        echo "   FAIL: suites without forward secrecy (static RSA) are offered"
        bad=1
    fi
    if [ "$trc" -ge 124 ] || ! grep -q 'Done ' "$out"; then
        echo "   FAIL: testssl did not finish (exit $trc); its output:"
        tail -20 "$out" | sed 's/^/   | /'
        bad=1
    fi
    if command -v sslscan >/dev/null; then
        echo "   sslscan:"
        timeout 120 sslscan --no-colour "127.0.0.1:$port" 2>&1 |
            grep -E '^(Preferred|Accepted) ' | sed 's/^/   | /'
    fi
    if [ "$bad" = 0 ]; then echo "== $name: passed"; else
        echo "== $name: FAILED"
        fails=$((fails + 1))
    fi
}

for k in $keys; do
    case $k in
    ec)
        start_host
        # The ephemeral certificate, as the server sends it, for --add-ca.
        openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null |
            openssl x509 >"$tmp/eph.pem" 2>/dev/null ||
            die "cannot read the ephemeral certificate from 127.0.0.1:$port"
        audit ec "$tmp/eph.pem"
        stop_host
        ;;
    rsa)
        rsa_certs || die "openssl could not make the RSA certificates"
        start_host --tls-cert "$tmp/rsa.pem" --tls-key "$tmp/rsa.key"
        audit rsa "$tmp/ca.pem"
        stop_host
        ;;
    *) die "ZLTK_AUDIT_KEYS: '$k' is not ec or rsa" ;;
    esac
done
if [ "$fails" = 0 ]; then echo "tls-audit: passed"; exit 0; fi
echo "tls-audit: $fails server(s) FAILED"
exit 1
