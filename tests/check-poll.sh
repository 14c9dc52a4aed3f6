#!/bin/sh
# The whole CUnit suite on the portable poll(2) backend.
: "${top_builddir:=.}"
ZLTK_POLLER_BACKEND=poll exec "$top_builddir/tests/zltk-tests" "$@"
