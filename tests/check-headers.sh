#!/bin/sh
# Every installed header must compile on its own, as C and with -Werror,
# with nothing but the other installed headers (and GLib's, which
# zltk/instance.h includes: zltk.pc requires glib-2.0) on the include path.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}" "${CC:=cc}" "${GLIB_CFLAGS:=}"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for h in "$top_srcdir"/include/zltk/*.h "$top_builddir"/include/zltk/version.h; do
    [ -f "$h" ] || continue
    name=$(basename "$h")
    n=$((n + 1))
    printf '#include <zltk/%s>\n#include <zltk/%s>\nint zl_header_test_%s;\n' \
        "$name" "$name" "$(echo "$name" | tr -c 'a-z0-9\n' '_')" > "$tmp/t.c"
    if $CC -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only \
        -I"$top_srcdir/include" -I"$top_builddir/include" $GLIB_CFLAGS "$tmp/t.c" \
        2> "$tmp/err"; then
        echo "ok: zltk/$name compiles alone"
    else
        echo "FAIL: zltk/$name does not compile alone:"
        cat "$tmp/err"
        fail=$((fail + 1))
    fi
    # And as C++ (plugins may be C++; tests/plugins/cxx.cc checks linkage).
    [ -n "${CXX:-}" ] || continue
    n=$((n + 1))
    cp "$tmp/t.c" "$tmp/t.cc"
    if $CXX -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only \
        -I"$top_srcdir/include" -I"$top_builddir/include" $GLIB_CFLAGS "$tmp/t.cc" \
        2> "$tmp/err"; then
        echo "ok: zltk/$name compiles alone as C++"
    else
        echo "FAIL: zltk/$name does not compile alone as C++:"
        cat "$tmp/err"
        fail=$((fail + 1))
    fi
done
echo "$((n - fail)) passed, $fail failed"
[ "$n" -gt 0 ] && [ "$fail" -eq 0 ]
