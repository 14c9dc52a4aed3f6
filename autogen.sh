#!/bin/sh
# Regenerate the build system from a git checkout (release tarballs need not).
set -e
cd "$(dirname "$0")"
autoreconf -fi
