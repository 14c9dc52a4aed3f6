#!/bin/sh
# The whole CUnit suite on the epoll backend (skipped where there is none).
: "${top_builddir:=.}"
if [ ! -r /usr/include/sys/epoll.h ] && ! grep -q 'HAVE_EPOLL_CREATE1 1' "$top_builddir/config.h" 2>/dev/null; then
    echo "no epoll on this system"; exit 77
fi
ZLTK_POLLER_BACKEND=epoll exec "$top_builddir/tests/zltk-tests" "$@"
