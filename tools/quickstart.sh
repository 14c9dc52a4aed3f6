#!/bin/sh
# zltk developer entry point.
#
#   tools/quickstart.sh host [ARGS]   install build deps, build, run zltk-host
#   tools/quickstart.sh check [DIR]   install build deps, build, run every test
#                                     (in DIR, default _build)
#   tools/quickstart.sh sanitize LIST build with -fsanitize=LIST in _build-LIST
#                                     (commas become dashes: libtool cannot
#                                     link from a directory with a comma)
#                                     and run every test (address,undefined |
#                                     thread)
#   tools/quickstart.sh deps          only install the build dependencies
#
# Builds go to _build*/ (out of tree); in a tree already configured in
# place (./configure && make), host and check use that build instead, and
# sanitize asks for "make distclean" first.  Installing packages needs root and
# Debian's package archive; if everything is already installed nothing is
# fetched.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

DEPS="build-essential autoconf automake libtool pkg-config libglib2.0-dev \
libcunit1-dev libssl-dev openssl socat iproute2 haproxy"

deps() {
    missing=""
    for p in $DEPS; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "quickstart: missing packages:$missing (install them as root)" >&2
        exit 1
    fi
    echo "quickstart: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

# A tree configured in place (the README's classic "./configure && make")
# cannot also build out of tree: automake refuses ("source directory
# already configured").  host and check then use that in-tree build; the
# sanitizer builds need their own directories, so they say how to get
# there.
in_tree() { [ -f "$top/config.status" ]; }

# build DIR [configure args...]
build() {
    dir=$1; shift
    if in_tree; then
        if [ "$dir" != . ]; then
            echo "quickstart: this tree was configured in place (./configure" \
                "in $top), so it cannot also build in $dir/." >&2
            echo "quickstart: run 'make distclean' here first, then" \
                "tools/quickstart.sh again." >&2
            exit 1
        fi
        make -s -j"$(nproc)"
        return
    fi
    [ -x configure ] || ./autogen.sh
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ]; then
        (cd "$dir" && "$top/configure" -q "$@")
    fi
    make -C "$dir" -s -j"$(nproc)"
}

# check DIR [make args]: run the suites, show every CUnit summary.
check() {
    dir=$1; shift
    rc=0
    make -C "$dir" -s -j1 check "$@" >"$dir/check.out" 2>&1 || rc=$?
    for log in "$dir"/tests/check-*.log; do
        echo "=== $(basename "$log" .log)"
        # The per-test lines are in the log; show failures and summaries.
        grep -E 'FAILED|Assertion|Suite .*(setup|cleanup)|Run Summary|^ +(suites|tests|asserts) |Elapsed|passed,|FAIL:|poller backend' "$log" || true
    done
    grep -E '^(# |PASS|FAIL|ERROR|SKIP|XFAIL)' "$dir/check.out" || cat "$dir/check.out"
    if [ "$rc" != 0 ]; then
        echo "quickstart: tests FAILED in $dir; full logs:" >&2
        cat "$dir"/tests/*.log >&2 || true
    fi
    return "$rc"
}

cmd=${1:-check}
[ $# -gt 0 ] && shift
case "$cmd" in
deps)
    deps ;;
host)
    deps
    dir=_build
    if in_tree; then
        dir=.
        echo "quickstart: using the in-place build of $top" >&2
    fi
    build "$dir"
    # The bundled plugins, uninstalled, are found through the search path.
    ZLTK_PLUGIN_PATH="$top/$dir/plugins/.libs${ZLTK_PLUGIN_PATH:+:$ZLTK_PLUGIN_PATH}" \
        exec "$dir/zltk-host" "$@" ;;
check)
    deps
    dir=${1:-_build}
    if [ $# -eq 0 ] && in_tree; then
        dir=.
        echo "quickstart: using the in-place build of $top" >&2
    fi
    build "$dir"
    check "$dir" ;;
sanitize)
    list=${1:?usage: quickstart.sh sanitize address,undefined|thread}
    deps
    dir="_build-$(echo "$list" | tr , -)"
    build "$dir" --enable-sanitizers="$list"
    case "$list" in
    *thread*)
        # Older TSan runtimes cannot map their shadow with high ASLR entropy.
        # GLib 2.74's GSlice recycles memory between threads behind
        # ThreadSanitizer's back: plain malloc lets it see every handover.
        check "$dir" ZLTK_TEST_SLOW=4 G_SLICE=always-malloc \
            SH_LOG_COMPILER="setarch $(uname -m) -R" \
            TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ;;
    *)
        check "$dir" ZLTK_TEST_SLOW=3 \
            ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
            UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" ;;
    esac ;;
*)
    sed -n '2,16p' "$0" >&2
    exit 2 ;;
esac
