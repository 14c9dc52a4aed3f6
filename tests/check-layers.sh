#!/bin/sh
# The folders of core/ are layers with one-way dependencies:
#
#     core/base  <  core/loop  <  core/net  <  core/plugin  <  core/host
#
# A file may include the headers of its own folder and of LOWER folders
# only.  This script reads the #include lines of every .c and .h under
# core/ and plugins/ and reports each one that breaks the rule:
#
#   - A quoted include is resolved the way the build's -I flags find it:
#     the including file's own folder first, then core/*/ in layer order.
#     "config.h" and headers the build generates (found in the build
#     directory) are fine.  A quoted include found nowhere is reported.
#   - An angle include is fine (<zltk/...> public headers, system headers),
#     unless its name is a private header of core/ (reached through -I).
#   - plugins/NAME/ may include only <zltk/...>, system headers, "config.h"
#     and headers of its own folder: never a private header of core/.
#   - No include circle between folders: if folder A reaches folder B and B
#     reaches A (directly or through other folders), the pair is reported
#     with one include of each direction.  With the order above any circle
#     also breaks the direction, so this is a second, plainer message.
#
# Usage: check-layers.sh [--root DIR] [--builddir DIR] [--self-test]
#   --root DIR      the source tree to check (default $top_srcdir)
#   --builddir DIR  where generated headers are (default $top_builddir)
#   --self-test     copy core/ and plugins/ to a temporary tree, break the
#                   rules on purpose and assert that the check fails with
#                   the expected messages (run by make check too).
# Exit 0 when clean, 1 on violations, 99 on a hard error.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
export LC_ALL=C

# The layers, lowest first.  A new folder of core/ must be added here.
LAYERS="base loop net plugin host"

root=$top_srcdir builddir=$top_builddir selftest=
while [ $# -gt 0 ]; do
    case $1 in
    --root) root=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    --self-test) selftest=yes; shift ;;
    *) echo "check-layers.sh: unknown argument '$1'" >&2; exit 99 ;;
    esac
done

# check ROOT BUILDDIR: print violations, return 0 if there are none.
check() {
    _root=$1 _bld=$2
    if [ ! -d "$_root/core" ]; then
        echo "check-layers.sh: no core/ in $_root" >&2; return 99
    fi
    _list=$(mktemp "${TMPDIR:-/tmp}/zltk-layers.XXXXXX") || return 99
    _gen=$(mktemp "${TMPDIR:-/tmp}/zltk-layers.XXXXXX") || return 99
    (cd "$_root" && find core plugins -type f \( -name '*.c' -o -name '*.h' \) \
        2>/dev/null | sort) >"$_list"
    # Generated headers: anything the build made (config.h, version.h, ...).
    if [ -d "$_bld" ]; then
        find "$_bld" -name '*.h' -type f ! -path '*/.libs/*' 2>/dev/null |
            sed 's|.*/||' | sort -u >"$_gen"
    fi
    awk -v root="$_root" -v layers="$LAYERS" -v genlist="$_gen" '
    function folder_of(path,    p) {
        # core/NAME/... -> NAME; plugins/NAME/... -> plugins/NAME
        split(path, p, "/")
        return p[1] == "core" ? p[2] : "plugins/" p[2]
    }
    function dir_of(path) { sub(/\/[^\/]*$/, "", path); return path }
    function base_of(path) { sub(/.*\//, "", path); return path }
    # resolve(FROM, NAME): the tree path of header NAME included by FROM,
    # or "" when it is not a header of the tree.
    function resolve(from, name,    d, i, cand) {
        d = dir_of(from)
        if ((d "/" name) in exists) return d "/" name
        if (name ~ /\//) {
            if (("core/" name) in exists) return "core/" name
            return ""
        }
        for (i = 1; i <= nlayers; i++) {
            cand = "core/" layer[i] "/" name
            if (cand in exists) return cand
        }
        return ""
    }
    function violation(msg) { print msg; nviol++ }
    function edge(a, b, where) {
        if (a == b) return
        if (!((a, b) in reach)) { reach[a, b] = 1; first[a, b] = where }
        folders[a] = 1; folders[b] = 1
    }
    BEGIN {
        nlayers = split(layers, layer, " ")
        for (i = 1; i <= nlayers; i++) rank[layer[i]] = i
        while ((getline g < genlist) > 0) generated[g] = 1
        close(genlist)
    }
    { files[++nfiles] = $0; exists[$0] = 1 }
    END {
        for (f = 1; f <= nfiles; f++) check_file(files[f])
        circles()
        printf "check-layers: %d files, %d includes, %d violations\n", \
            nfiles, nincl, nviol
        exit (nviol > 0)
    }
    function check_file(path,    line, n, name, quoted, target, from, to) {
        from = folder_of(path)
        if (path ~ /^core\// && !(from in rank)) {
            violation(path ": core/" from " is not a layer (known: " layers \
                "; add it to LAYERS in tests/check-layers.sh)")
            return
        }
        n = 0
        while ((getline line < (root "/" path)) > 0) {
            n++
            if (line !~ /^[ \t]*#[ \t]*include[ \t]*["<]/) continue
            nincl++
            quoted = line ~ /^[ \t]*#[ \t]*include[ \t]*"/
            name = line
            sub(/^[ \t]*#[ \t]*include[ \t]*["<]/, "", name)
            sub(/[">].*$/, "", name)
            if (!quoted && name ~ /^zltk\//) continue
            target = resolve(path, name)
            if (target == "") {
                if (quoted && name != "config.h" && !(base_of(name) in generated))
                    violation(path ":" n ": \"" name "\" is neither a header " \
                        "of the tree nor a generated one")
                continue
            }
            to = folder_of(target)
            if (from ~ /^plugins\//) {
                if (to != from)
                    violation(path ":" n ": " from " includes " name " (" \
                        (to ~ /^plugins\// ? to : "core/" to) \
                        "): a plugin may include only <zltk/...>, system " \
                        "headers and its own folder'\''s")
                continue
            }
            if (to ~ /^plugins\//) {
                violation(path ":" n ": core/" from " includes " name " (" to \
                    "): core must not depend on a plugin")
                edge(from, to, path ":" n)
                continue
            }
            if (rank[to] > rank[from])
                violation(path ":" n ": core/" from " includes " name \
                    " (core/" to "): a lower layer must not depend on a " \
                    "higher one")
            edge(from, to, path ":" n)
        }
        close(root "/" path)
    }
    # Transitive closure of the folder graph; every pair that reaches each
    # other is an include circle.
    function circles(    k, i, j, a, b, na, fl) {
        na = 0   # layers in order (stable messages), then plugins
        for (i = 1; i <= nlayers; i++) if (layer[i] in folders) fl[++na] = layer[i]
        for (a in folders) if (!(a in rank)) fl[++na] = a
        for (k = 1; k <= na; k++)
            for (i = 1; i <= na; i++)
                for (j = 1; j <= na; j++)
                    if (((fl[i], fl[k]) in reach) && ((fl[k], fl[j]) in reach) \
                        && !((fl[i], fl[j]) in reach)) {
                        reach[fl[i], fl[j]] = 1
                        first[fl[i], fl[j]] = first[fl[i], fl[k]] " -> " \
                            first[fl[k], fl[j]]
                    }
        for (i = 1; i <= na; i++)
            for (j = i + 1; j <= na; j++) {
                a = fl[i]; b = fl[j]
                if (((a, b) in reach) && ((b, a) in reach))
                    violation("include circle between " \
                        (a ~ /\// ? a : "core/" a) " and " \
                        (b ~ /\// ? b : "core/" b) ": " first[a, b] \
                        " and back: " first[b, a])
            }
    }
    ' "$_list"
    _rc=$?
    rm -f "$_list" "$_gen"
    return $_rc
}

# ------------------------------------------------------------ self-test
# expect_fail NAME STRING: the check of $tree fails and prints STRING.
st_pass=0 st_fail=0
expect_fail() {
    if check "$tree" "$builddir" >"$tmp/out" 2>&1; then
        echo "FAIL: self-test: $1: the check passed"
        st_fail=$((st_fail + 1))
    elif ! grep -Fq -- "$2" "$tmp/out"; then
        echo "FAIL: self-test: $1: no line with '$2':"
        sed 's/^/  /' "$tmp/out"
        st_fail=$((st_fail + 1))
    else
        echo "ok: self-test: $1 fails: $(grep -F -- "$2" "$tmp/out" | head -n 1)"
        st_pass=$((st_pass + 1))
    fi
}
expect_pass() {
    if check "$tree" "$builddir" >"$tmp/out" 2>&1; then
        echo "ok: self-test: $1 passes"
        st_pass=$((st_pass + 1))
    else
        echo "FAIL: self-test: $1: the check failed:"
        sed 's/^/  /' "$tmp/out"
        st_fail=$((st_fail + 1))
    fi
}

self_test() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-layers-st.XXXXXX") || exit 99
    trap 'rm -rf "$tmp"' EXIT
    tree=$tmp/tree
    mkdir "$tree" && cp -R "$root/core" "$root/plugins" "$tree/" &&
        chmod -R u+w "$tree" || exit 99   # distcheck: the srcdir is read-only
    expect_pass "the copy of the tree"

    # A file of the lowest layer including a header of core/net.
    nethdr=$(cd "$tree/core/net" && ls *.h | head -n 1)
    [ -n "$nethdr" ] || { echo "FAIL: self-test: no header in core/net"; exit 1; }
    printf '/* self-test */\n#include "%s"\n' "$nethdr" \
        >"$tree/core/base/zz-layer-selftest.c"
    expect_fail "core/base including a core/net header" \
        "core/base/zz-layer-selftest.c:2: core/base includes $nethdr (core/net): a lower layer must not depend on a higher one"
    # The same through <...> (the -I flags make it reachable).
    printf '#include <%s>\n' "$nethdr" >"$tree/core/base/zz-layer-selftest.c"
    expect_fail "core/base including <$nethdr>" \
        "core/base/zz-layer-selftest.c:1: core/base includes $nethdr (core/net)"
    rm -f "$tree/core/base/zz-layer-selftest.c"

    # Both ways: a circle between two folders.
    basehdr=$(cd "$tree/core/base" && ls *.h | head -n 1)
    printf '#include "%s"\n' "$basehdr" >"$tree/core/net/zz-up.h"
    printf '#include "zz-up.h"\n' >"$tree/core/base/zz-down.h"
    expect_fail "an include circle core/base <-> core/net" \
        "include circle between core/base and core/net"
    rm -f "$tree/core/net/zz-up.h" "$tree/core/base/zz-down.h"

    # A plugin including a private header of core/.
    plug=$(cd "$tree/plugins" && ls | head -n 1)
    printf '#include <zltk/plugin.h>\n#include "%s"\n' "$basehdr" \
        >"$tree/plugins/$plug/zz-selftest.c"
    expect_fail "plugins/$plug including a core/ header" \
        "plugins/$plug/zz-selftest.c:2: plugins/$plug includes $basehdr (core/base): a plugin may include only"
    rm -f "$tree/plugins/$plug/zz-selftest.c"

    # An include of nothing known; a folder that is not a layer.
    printf '#include "no-such-header.h"\n' >"$tree/core/loop/zz-selftest.c"
    expect_fail "an unresolvable quoted include" \
        "core/loop/zz-selftest.c:1: \"no-such-header.h\" is neither"
    rm -f "$tree/core/loop/zz-selftest.c"
    mkdir "$tree/core/misc" && printf '\n' >"$tree/core/misc/x.c"
    expect_fail "a folder of core/ that is not a layer" \
        "core/misc/x.c: core/misc is not a layer"
    rm -rf "$tree/core/misc"

    expect_pass "the copy again, test files removed"
    echo "$st_pass passed, $st_fail failed"
    [ "$st_fail" -eq 0 ]
}

if [ -n "$selftest" ]; then
    self_test
else
    check "$root" "$builddir"
fi
