#!/usr/bin/env bash
# Run a libFuzzer target for a while on a corpus of seeds made here.
#   run_fuzz.sh FUZZER SECONDS [DICT]
# Crashing inputs are kept as ./crash-* (the test's working directory) and
# shown in hex.  Exit 0 when the fuzzer found nothing.
set -euo pipefail
fuzzer=$1 secs=$2 dict=${3:-}
corpus=$(mktemp -d "${TMPDIR:-/tmp}/mmk-fuzz-XXXXXX")
trap 'rm -rf "$corpus"' EXIT

seed() { printf "$2" > "$corpus/$1"; }
h20='aaaaaaaaaaaaaaaaaaaa'
seed int 'i-42e'
seed str '5:hello'
seed list 'li1e3:abcle0:e'
seed dict 'd1:ai1e1:bd1:cl0:eee'
seed single "d8:announce9:http://x/4:infod6:lengthi5e4:name5:a.bin12:piece lengthi16384e6:pieces20:${h20}ee"
seed multi "d4:infod5:filesld6:lengthi3e4:pathl1:a1:beed6:lengthi0e4:pathl5:emptyeed6:lengthi16384e4:pathl3:bigeee4:name3:dir12:piece lengthi16384e6:pieces40:${h20}${h20}7:privatei1eee"
seed evil "d4:infod5:filesld6:lengthi1e4:pathl2:..6:passwdeee4:name1:x12:piece lengthi16384e6:pieces20:${h20}ee"
seed unsorted 'd1:bi1e1:ai2ee'

args=(-max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048
      -print_final_stats=1 -artifact_prefix=./)
[ -n "$dict" ] && args+=(-dict="$dict")
echo "fuzzing for ${secs} s: $fuzzer ${args[*]} CORPUS"
if ! "$fuzzer" "${args[@]}" "$corpus"; then
  for f in ./crash-* ./leak-* ./timeout-* ./oom-*; do
    [ -f "$f" ] && { echo "input $f:"; od -A d -c "$f" | head -40; }
  done
  exit 1
fi
