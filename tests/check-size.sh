#!/bin/sh
# Size limits of core/ and plugins/: no function over MAX_FUNC lines (120)
# and no .c file over MAX_FILE lines (1000).  Offenders are printed with
# their counts; the exceptions of tests/size-allow.txt are printed as notes
# and do not fail the check (an exception that is no longer needed is
# noted too, so the list can be trimmed).
#
# Function detection is a plain awk reading of K&R-style C as this tree
# writes it (see tests/size-allow.txt for the format of exceptions):
#   - a function starts at a line that begins, in column 0, with an
#     identifier, contains '(' and does not end in ';' (nor is a
#     preprocessor line or a comment);
#   - its body opens with '{' in column 0 before any line ending in ';';
#   - it ends at the next '}' in column 0.
# Its length counts from the start line to the closing '}', inclusive; its
# name is the identifier just before the first '(' of the start line.
# A function whose braces do not follow this layout is not seen.
#
# Usage: check-size.sh [--root DIR] [--allow FILE] [--max-function N]
#                      [--max-file N] [--self-test]
#   Defaults: --root $top_srcdir, --allow $top_srcdir/tests/size-allow.txt;
#   the limits default to the "limit" lines of the allow file, else 120 and
#   1000.  --self-test copies the tree, adds a too-long function and a
#   too-long file, and asserts that the check fails with their counts.
# Exit 0 when clean, 1 on offenders, 99 on a hard error.
set -u
: "${top_srcdir:=.}"
export LC_ALL=C

root=$top_srcdir allow=$top_srcdir/tests/size-allow.txt selftest=
max_func= max_file=
while [ $# -gt 0 ]; do
    case $1 in
    --root) root=$2; shift 2 ;;
    --allow) allow=$2; shift 2 ;;
    --max-function) max_func=$2; shift 2 ;;
    --max-file) max_file=$2; shift 2 ;;
    --self-test) selftest=yes; shift ;;
    *) echo "check-size.sh: unknown argument '$1'" >&2; exit 99 ;;
    esac
done

# limit NAME DEFAULT: "limit NAME N" from the allow file, else DEFAULT.
limit() {
    _l=
    [ -r "$allow" ] &&
        _l=$(awk -v k="$1" '$1 == "limit" && $2 == k { v = $3 } END { print v }' \
            "$allow")
    echo "${_l:-$2}"
}
: "${max_func:=$(limit function 120)}" "${max_file:=$(limit file 1000)}"

# check ROOT ALLOW: print offenders, return 0 if all are allowed.
check() {
    _root=$1 _allow=$2
    [ -r "$_allow" ] || _allow=/dev/null
    _list=$(mktemp "${TMPDIR:-/tmp}/zltk-size.XXXXXX") || return 99
    (cd "$_root" && find core plugins -type f \( -name '*.c' -o -name '*.h' \) \
        2>/dev/null | sort) >"$_list"
    awk -v root="$_root" -v allowf="$_allow" -v maxfn="$max_func" \
        -v maxfile="$max_file" '
    BEGIN {
        while ((getline l < allowf) > 0) {
            if (l ~ /^[ \t]*(#|$)/) continue
            split(l, a, /[ \t]+/)
            if (a[1] == "limit") continue
            allowed[a[1], a[2]] = 1; entries[a[1], a[2]] = a[1] " " a[2]
        }
        close(allowf)
    }
    { scan($0) }
    function report(file, what, n, limit, kind,    key) {
        key = file SUBSEP what
        if (key in allowed) {
            used[key] = 1
            printf "note: %s: %s is %d lines (limit %d): allowed by " \
                "tests/size-allow.txt\n", file, kind, n, limit
        } else {
            printf "%s: %s is %d lines (limit %d)\n", file, kind, n, limit
            nbad++
        }
    }
    function scan(path,    line, n, cand, name, start, inbody) {
        n = 0; cand = ""; inbody = 0
        while ((getline line < (root "/" path)) > 0) {
            n++
            if (inbody) {
                if (line ~ /^}/) {
                    nfunc++
                    if (n - start + 1 > maxfn)
                        report(path, name, n - start + 1, maxfn, name "()")
                    inbody = 0; cand = ""
                }
                continue
            }
            if (line ~ /^[A-Za-z_]/ && line ~ /\(/ && line !~ /;[ \t]*$/) {
                cand = line; start = n
                sub(/\(.*/, "", cand); sub(/[ \t*]+$/, "", cand)
                sub(/.*[^A-Za-z0-9_]/, "", cand)
                name = cand
                continue
            }
            if (cand != "" && line ~ /^\{/) { inbody = 1; continue }
            if (cand != "" && (line ~ /;[ \t]*$/ || line ~ /^[^ \t]/)) cand = ""
        }
        close(root "/" path)
        nfiles++
        if (path ~ /\.c$/ && n > maxfile) report(path, "*", n, maxfile, "the file")
    }
    END {
        for (k in entries)
            if (!(k in used))
                printf "note: tests/size-allow.txt: \"%s\" is no longer " \
                    "needed: remove it\n", entries[k]
        printf "check-size: %d files, %d functions, %d over the limits " \
            "(function %d, file %d lines)\n", nfiles, nfunc, nbad, maxfn, maxfile
        exit (nbad > 0)
    }
    ' "$_list"
    _rc=$?
    rm -f "$_list"
    return $_rc
}

# ------------------------------------------------------------ self-test
st_pass=0 st_fail=0
st_check() { # NAME WANT(pass|fail) [STRING]
    if check "$tree" "$tmp/allow" >"$tmp/out" 2>&1; then _got=pass; else _got=fail; fi
    if [ "$_got" != "$2" ]; then
        echo "FAIL: self-test: $1: the check should $2:"
        sed 's/^/  /' "$tmp/out"; st_fail=$((st_fail + 1))
    elif [ $# -gt 2 ] && ! grep -Fq -- "$3" "$tmp/out"; then
        echo "FAIL: self-test: $1: no line with '$3':"
        sed 's/^/  /' "$tmp/out"; st_fail=$((st_fail + 1))
    else
        echo "ok: self-test: $1: ${3:-the check ${2}es}"
        st_pass=$((st_pass + 1))
    fi
}

# long_function NAME BODY-LINES: a K&R function of 4 + BODY-LINES lines.
long_function() {
    printf 'static int %s(int x)\n{\n' "$1"
    _i=0
    while [ $_i -lt "$2" ]; do echo '    x += 1;'; _i=$((_i + 1)); done
    printf '    return x;\n}\n'
}

self_test() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/zltk-size-st.XXXXXX") || exit 99
    trap 'rm -rf "$tmp"' EXIT
    tree=$tmp/tree
    mkdir "$tree" && cp -R "$root/core" "$root/plugins" "$tree/" &&
        chmod -R u+w "$tree" || exit 99   # distcheck: the srcdir is read-only
    cp "$allow" "$tmp/allow" 2>/dev/null || : >"$tmp/allow"
    chmod u+w "$tmp/allow"
    st_check "the copy of the tree, with the allow list" pass

    # One line over the limit, and one line under it.
    f=$tree/core/base/zz-size-selftest.c
    {
        long_function too_long $((max_func - 3))
        long_function just_fits $((max_func - 4))
    } >"$f"
    st_check "a function of $((max_func + 1)) lines" fail \
        "core/base/zz-size-selftest.c: too_long() is $((max_func + 1)) lines (limit $max_func)"
    if grep -q 'just_fits' "$tmp/out"; then
        echo "FAIL: self-test: a function of $max_func lines is reported"
        st_fail=$((st_fail + 1))
    fi
    echo "core/base/zz-size-selftest.c too_long" >>"$tmp/allow"
    st_check "the same function, allowed" pass "allowed by tests/size-allow.txt"
    rm -f "$f"
    st_check "a stale allow-list entry" pass \
        "\"core/base/zz-size-selftest.c too_long\" is no longer needed"

    # A file of max_file + 1 lines, of short functions.
    mkdir -p "$tree/plugins/zz" && f=$tree/plugins/zz/big.c
    _i=0
    while [ $_i -lt $((max_file + 1)) ]; do
        echo '/* filler */'; _i=$((_i + 1))
    done >"$f"
    st_check "a .c file of $((max_file + 1)) lines" fail \
        "plugins/zz/big.c: the file is $((max_file + 1)) lines (limit $max_file)"
    rm -rf "$tree/plugins/zz"

    echo "$st_pass passed, $st_fail failed"
    [ "$st_fail" -eq 0 ]
}

if [ -n "$selftest" ]; then
    self_test
else
    check "$root" "$allow"
fi
