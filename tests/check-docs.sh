#!/bin/sh
# Every C code block of the guides in doc/*.md and of the man pages in
# doc/*.[1-9] compiles against the
# installed headers (and a block with main() links against libzltk and
# runs), so an example a reader copies works as shown.
#
# A block that is a fragment says what it needs on the line before its
# fence, in an HTML comment the rendered page does not show:
#
#   <!-- compile: PRELUDE [body] -->
#
# PRELUDE names a context below (the declarations the surrounding text
# talks about); "body" puts the block inside a function, for blocks that
# are statements.  A block without the comment must compile as it stands.
# In a man page the comment is a roff comment before .EX:
#
#   .\" compile: PRELUDE [body]
# One line per block ("ok: ..." / "FAIL: ..."), then "N passed, M failed".
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}" "${CC:=cc}" "${GLIB_CFLAGS:=}"
: "${GLIB_LIBS:=-lglib-2.0}" "${SAN_FLAGS:=}"
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

# ------------------------------------------------------------ contexts
prelude() {
    case $1 in
    zltk) # the library API, as an application sees it
        printf '#include <zltk/zltk.h>\n' ;;
    worker) # doc/runtime.md: the arguments of zl_worker_submit
        cat <<'EOF'
#include <zltk/zltk.h>
static void work_fn(void *arg) { (void)arg; }
static void done_fn(void *arg) { (void)arg; }
static void destroy_fn(void *arg) { (void)arg; }
EOF
        printf 'static void doc_ctx(zl_worker_pool_t *workers, zl_poller_t *reply_poller, void *arg)\n{\n    zl_work_t *job;\n' ;;
    echo-conn) # doc/net.md: the echo handler of the block before
        cat <<'EOF'
#include <zltk/zltk.h>
static void on_recv(zl_conn_t *c, zl_buf_t *buf) { zl_conn_send(c, buf->data, buf->len); }
static const zl_conn_handler_t echo = {.on_recv = on_recv};
static const zl_conn_handler_t my_client_handler = {.on_recv = on_recv};
static int my_state_storage;
static void *my_state = &my_state_storage;
EOF
        ;;
    embed) # doc/embedding.md: a program's includes, its signal wait
        cat <<'EOF'
#include <zltk/zltk.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int wait_for_signal(void);
EOF
        ;;
    embed-app) # doc/embedding.md: the guide's client and server handlers
        prelude embed
        cat <<'EOF'
static void doc_recv(zl_session_t *s, void *state, zl_buf_t *buf) { (void)s; (void)state; (void)buf; }
static const zl_handler_t hello_client = {.struct_size = sizeof(zl_handler_t), .on_recv = doc_recv};
static const zl_handler_t echo_server = {.struct_size = sizeof(zl_handler_t), .on_recv = doc_recv};
EOF
        ;;
    plugin) # doc/plugins.md: a plugin's file, with the host API pointer
        cat <<'EOF'
#include <zltk/error.h>
#include <zltk/plugin.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
static const zl_host_api_t *host;
EOF
        ;;
    echo-plugin) # doc/plugins.md: the echo plugin's session state
        prelude plugin
        printf 'typedef struct echo_session { uint64_t bytes; bool paused; } echo_session_t;\n' ;;
    tls-timer) # doc/plugins.md: the tls layer's session and timer info
        prelude plugin
        cat <<'EOF'
enum { PH_HANDSHAKE = 1 };
typedef struct tls_sess { unsigned gen; int phase; } tls_sess_t;
typedef struct tls_inst { uint64_t timeout_ms; } tls_inst_t;
EOF
        ;;
    *) return 1 ;;
    esac
}

# The opening of a "body" block's function, when its prelude has none.
body_open() {
    case $1 in
    worker) ;; # the prelude opened doc_ctx
    tls-timer)
        printf 'static void doc_ctx(zl_session_t *s, tls_sess_t *ls, const tls_inst_t *ti)\n{\n' ;;
    *) printf 'static void doc_ctx(void)\n{\n' ;;
    esac
}

# ------------------------------------------------------------ blocks
# extract FILE: one file per C block, $tmp/blocks/N.c, with N.meta holding
# "LINE PRELUDE MODE".  Markdown: ```c fences.  Man pages: .EX/.EE blocks
# that are C (a compile comment before .EX, an #include <zltk/...> or
# ZLTK_PLUGIN_DEFINE), with roff escapes undone.
extract() {
    rm -rf "$tmp/blocks" && mkdir "$tmp/blocks"
    case $1 in
    *.md)
        awk -v dir="$tmp/blocks" '
            /^<!-- compile: .* -->$/ {
                ann = $0; sub(/^<!-- compile: /, "", ann); sub(/ -->$/, "", ann)
                ann_line = NR; next
            }
            /^```c$/ && !inb {
                n++; inb = 1
                if (ann_line != NR - 1) ann = ""
                split(ann, a, " ")
                printf "%d %s %s\n", NR + 1, (a[1] ? a[1] : "-"), (a[2] ? a[2] : "-") \
                    > (dir "/" n ".meta")
                printf "" > (dir "/" n ".c")
                next
            }
            /^```/ && inb { inb = 0; next }
            inb { print >> (dir "/" n ".c") }
        ' "$1" ;;
    *)
        awk -v dir="$tmp/blocks" '
            /^\.\\" compile: / {
                ann = $0; sub(/^\.\\" compile: /, "", ann); ann_line = NR; next
            }
            /^\.EX/ && !inb {
                inb = 1; start = NR + 1; body = ""
                if (ann_line != NR - 1) ann = ""
                next
            }
            /^\.EE/ && inb {
                inb = 0
                if (ann != "" || body ~ /#include <zltk\// || body ~ /ZLTK_PLUGIN_DEFINE/) {
                    n++
                    split(ann, a, " ")
                    printf "%d %s %s\n", start, (a[1] ? a[1] : "-"), (a[2] ? a[2] : "-") \
                        > (dir "/" n ".meta")
                    printf "%s", body > (dir "/" n ".c")
                }
                ann = ""; next
            }
            inb {
                l = $0
                gsub(/\\-/, "-", l); gsub(/\\\(aq/, "\047", l)
                gsub(/\\\(dq/, "\"", l); gsub(/\\&/, "", l); gsub(/\\e/, "\\", l)
                body = body l "\n"
            }
        ' "$1" ;;
    esac
}

cflags="-std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
-Wno-unused-function -Wno-unused-variable -Wno-missing-field-initializers \
-I$top_srcdir/include -I$top_builddir/include $GLIB_CFLAGS"

for md in "$top_srcdir"/doc/*.md "$top_srcdir"/doc/*.[1-9]; do
    extract "$md"
    for meta in "$tmp"/blocks/*.meta; do
        [ -f "$meta" ] || continue
        b=${meta%.meta}
        read -r line pre mode <"$meta"
        name="$(basename "$md"):$line"
        src="$tmp/example.c"
        {
            printf '#define _GNU_SOURCE 1\n'
            if [ "$pre" != - ]; then
                if ! prelude "$pre"; then
                    echo "#error unknown prelude '$pre'"
                fi
            fi
            [ "$mode" = body ] && body_open "$pre"
            printf '#line %s "%s"\n' "$line" "$(basename "$md")"
            cat "$b.c"
            [ "$mode" = body ] && printf '}\n'
        } >"$src"
        if grep -q '^int main(' "$b.c"; then
            # A program: it links against libzltk and runs to its end.
            # Built like the library (a sanitizer build links its runtime).
            if $CC $cflags $SAN_FLAGS -o "$tmp/example" "$src" \
                    -L"$top_builddir/core/.libs" -lzltk $GLIB_LIBS \
                    2>"$tmp/err" &&
               LD_LIBRARY_PATH="$top_builddir/core/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
                    timeout 20 "$tmp/example" >"$tmp/run.out" 2>&1; then
                echo "ok: $name: a program that compiles, links and runs"
                passed=$((passed + 1))
            else
                echo "FAIL: $name: the program does not compile, link or run:"
                sed 's/^/  /' "$tmp/err" "$tmp/run.out" 2>/dev/null
                failed=$((failed + 1))
            fi
        elif $CC $cflags -c -o "$tmp/example.o" "$src" 2>"$tmp/err"; then
            ctx=
            [ "$pre" != - ] && ctx=" (context: $pre${mode#-})"
            [ "$mode" = body ] && ctx=" (context: $pre, as a function body)"
            echo "ok: $name: compiles$ctx"
            passed=$((passed + 1))
        else
            echo "FAIL: $name: does not compile:"
            sed 's/^/  /' "$tmp/err"
            failed=$((failed + 1))
        fi
    done
done
echo "$passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
