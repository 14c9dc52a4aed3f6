#!/bin/sh
# make check: tests/check-size.sh can fail (it breaks a copy of the tree on
# purpose and expects the messages).
: "${top_srcdir:=.}"
exec sh "$top_srcdir/tests/check-size.sh" --self-test
