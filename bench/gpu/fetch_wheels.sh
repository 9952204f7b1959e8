#!/bin/sh
# The wheels bench/gpu/run.py installs on the GPU machine (no network there): ~33 MB, pure Python.
# --4bit adds bitsandbytes (43 MB; carry it in a second call: 64 MiB travel per call).
set -eu
cd "$(dirname "$0")"
PIP="${PIP:-python -m pip}"
$PIP download -q --no-deps -d wheels unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.14.2 datasets==4.8.5
if [ "${1:-}" = "--4bit" ]; then
  $PIP download -q --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 -d wheels-4bit bitsandbytes==0.50.2
fi
du -sh wheels ${1:+wheels-4bit} 2>/dev/null || true
