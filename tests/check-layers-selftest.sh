#!/bin/sh
# make check: tests/check-layers.sh can fail (it breaks a copy of the tree on
# purpose and expects the messages).
: "${top_srcdir:=.}"
exec sh "$top_srcdir/tests/check-layers.sh" --self-test
