#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers a peer reaches (fuzz_parsers.c) with
# libFuzzer, ASan and UBSan.  Not CI: run it by hand, bounded in time.
#   bench/fuzz/run.sh [SECONDS]      (default 60; needs clang)
# Findings land in bench/fuzz/findings/; each one fixed becomes a test in
# tests/hostile/ and its input a file in bench/fuzz/corpus/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
out=$root/build/fuzz
mkdir -p "$out" "$here/findings"
python3 -c "import sys; sys.path.insert(0, '$root/vendor'); import mgpatch; mgpatch.patched_dir('$root/vendor', '$out/mongoose')"
# The shim's files, in the order build_ffi.py includes them (its CYM_* hooks
# are defined below as build_ffi.py defines them)
for f in $(ls "$root"/cymongoose/_csrc/*.c | sort); do echo "#include \"$(basename "$f")\""; done \
  > "$out/shim_all.h"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DMG_ENABLE_IPV6=1 -DMG_MAX_HTTP_HEADERS=100 -DMG_TLS=MG_TLS_BUILTIN -D_GNU_SOURCE \
  -DCYM_BEFORE_WRITES=cym_batch_deliver -DCYM_BURST_NEEDED=cym_burst_needed \
  -DCYM_HAND_OFF=cym_hand_off -DCYM_AROUND_WAIT=cym_park_wait \
  -DCYM_POLL_WANTED=cym_poll_wanted \
  -I"$out/mongoose" -I"$root/vendor" -I"$root/cymongoose/_csrc" -I"$out" \
  "$here/fuzz_parsers.c" -o "$out/fuzz_parsers" -lpthread -lz
work=$out/corpus
mkdir -p "$work"
cp -n "$here"/corpus/* "$work"/ 2>/dev/null || true
"$out/fuzz_parsers" -max_total_time="$secs" -max_len=65536 -timeout=5 \
  -artifact_prefix="$here/findings/" "$work"
