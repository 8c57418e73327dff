#!/usr/bin/env bash
# `mmk torrent` end to end: create, info and verify on generated trees, and
# interoperability with mktorrent(1) in both directions.
#   torrent_check.sh PATH/TO/mmk
# Everything that does not need mktorrent runs anyway; without mktorrent the
# script exits 77 (skipped) at the end unless something failed.
set -uo pipefail
mmk=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmk-torrent-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
have_mktorrent=1
command -v mktorrent >/dev/null 2>&1 || have_mktorrent=0

# Run a command, expect exit status $1; keep its stdout in $out, stderr in $err.
expect() {
  local want=$1; shift
  out=$("$@" 2>"$tmp/stderr"); local rc=$?
  err=$(cat "$tmp/stderr")
  if [ "$rc" -ne "$want" ]; then
    fail "$* exited $rc, want $want; stderr: $err"
    return 1
  fi
  return 0
}

# A JSON number or string field of the first object on stdin (no jq needed).
json_field() { grep -o "\"$1\":\(\"[^\"]*\"\|[a-z0-9.]*\|\[[^]]*\]\)" | head -n1 | sed "s/^\"$1\"://; s/\"//g"; }

info_hash() { "$mmk" --json torrent info "$1" | json_field info_hash; }

# The offset of PATH in torrent T (from info --json).
file_offset() {
  "$mmk" --json torrent info "$1" | grep -o "{\"path\":\"$2\",\"length\":[0-9]*,\"offset\":[0-9]*}" |
    sed 's/.*"offset"://; s/}//'
}

# Flip the byte at OFFSET of FILE.
flip_byte() {
  local b
  b=$(od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( (b + 1) % 256 )))" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---- a tree with what matters -------------------------------------------------
make_tree() {
  local d=$1
  mkdir -p "$d/a/b/c" "$d/many" "$d/.hdir" "$d/a-c" "$d/A" "$d/emptydir"
  head -c 300000 /dev/urandom > "$d/big.bin"       # larger than a piece
  head -c 70000 /dev/urandom > "$d/a/b/c/deep.bin"  # nested
  : > "$d/empty0"; : > "$d/a/empty1"                # empty files
  printf x > "$d/one"; printf y > "$d/a/b/one"       # 1-byte files
  printf hidden > "$d/.hidden"; printf h > "$d/.hdir/x"
  printf 1 > "$d/a-c/x"; printf 2 > "$d/a.c"; printf 3 > "$d/a0"; printf 4 > "$d/A/q"
  printf s > "$d/sp ace"; printf u > "$d/é"
  for i in $(seq 0 299); do                          # many small files
    head -c $(( (i * 37) % 2000 + 1 )) /dev/urandom > "$d/many/f$i"
  done
  ln -s one "$d/link"; ln -s a/b "$d/dirlink"        # symlinks, followed
  mkfifo "$d/fifo"                                   # left out
}

mkdir -p src out
make_tree src/tree

# ---- create and info -------------------------------------------------------------
expect 0 "$mmk" torrent create -d -l 15 -a http://tracker.invalid/a -o out/t15.torrent src/tree &&
  ok "create -l 15"
expect 0 "$mmk" --json torrent info out/t15.torrent
[ "$(echo "$out" | json_field name)" = tree ] || fail "info: name"
[ "$(echo "$out" | json_field piece_length)" = 32768 ] || fail "info: piece length"
nfiles=$(echo "$out" | grep -o '"path":' | wc -l)
# 300 many/ + big, deep, empty0, empty1, one, a/b/one, .hidden, .hdir/x, a-c/x, a.c,
# a0, A/q, "sp ace", é, link, dirlink/one, dirlink/c/deep.bin
[ "$nfiles" -eq 317 ] || fail "info: $nfiles files, want 317 (hidden, empty, symlinked in; FIFO out)"
echo "$out" | grep -q '"path":"tree/fifo"' && fail "a FIFO was included"
echo "$out" | grep -q '"path":"tree/.hidden"' || fail "hidden file left out"
echo "$out" | grep -q '"path":"tree/a/empty1","length":0' || fail "empty file left out"
total=$(echo "$out" | json_field total_size)
pieces=$(echo "$out" | json_field pieces)
[ "$pieces" -eq $(( (total + 32767) / 32768 )) ] || fail "info: pieces $pieces for $total bytes"
# strcmp order of the whole path: "A/q" < "a-c/x" < "a.c" < "a/..." < "a0"
order=$(echo "$out" | grep -o '"path":"tree/[^"]*"' | sed 's/"path":"tree\///; s/"$//' |
        grep -E '^(A/q|a-c/x|a\.c|a/empty1|a0)$' | tr '\n' ' ')
[ "$order" = "A/q a-c/x a.c a/empty1 a0 " ] || fail "file order: $order"
expect 0 "$mmk" torrent info out/t15.torrent
echo "$out" | grep -q "^info-hash     $(info_hash out/t15.torrent)$" || fail "info text: info-hash line"
ok "info"

# -l forms: an exponent below 64, else bytes (with K/M)
h18=$("$mmk" torrent create -q -d -l 18 -o - src/tree | "$mmk" --json torrent info - | json_field info_hash)
for l in 262144 256K 256KiB; do
  h=$("$mmk" torrent create -q -d -l "$l" -o - src/tree | "$mmk" --json torrent info - | json_field info_hash)
  [ "$h" = "$h18" ] || fail "-l $l differs from -l 18"
done
hdef=$("$mmk" torrent create -q -d -o - src/tree | "$mmk" --json torrent info - | json_field info_hash)
[ "$hdef" = "$h18" ] || fail "the default piece length is not 256 KiB"
for l in 13 29 100000 8K 0 -3 x; do
  expect 2 "$mmk" torrent create -l "$l" -o out/bad.torrent src/tree || true
done
[ -e out/bad.torrent ] && fail "a refused create wrote its output"
ok "-l forms"

# existing output: refused, -f overwrites
expect 3 "$mmk" torrent create -l 15 -o out/t15.torrent src/tree &&
  echo "$err" | grep -q exists || fail "create over an existing file: $err"
expect 0 "$mmk" torrent create -q -f -d -l 15 -a http://tracker.invalid/a -o out/t15.torrent src/tree
ok "create -f"

# ---- verify: good data, both read paths, several thread counts -------------------
for args in "" "-j 1" "-j 3" "--pin" "--pin -j 1" "--pread -j 2" "--readahead 0" "--chunk 64K"; do
  # shellcheck disable=SC2086
  expect 0 "$mmk" --json torrent verify $args out/t15.torrent src || continue
  [ "$(echo "$out" | json_field good)" = "$pieces" ] || fail "verify $args: not all good"
  [ "$(echo "$out" | json_field ok)" = true ] || fail "verify $args: not ok"
done
expect 0 "$mmk" torrent verify out/t15.torrent src
echo "$out" | grep -q "^$pieces pieces: $pieces good, 0 bad, 0 missing: OK$" || fail "verify text: $out"
echo "$out" | grep -q 'MB/s' || fail "verify prints no throughput"
expect 0 "$mmk" -q torrent verify out/t15.torrent src
[ -z "$out" ] || fail "--quiet printed: $out"
ok "verify good data"

# A working copy without symbolic links, to damage.
mkdir -p data && cp -rL src/tree data/tree 2>/dev/null; rm -f data/tree/fifo
expect 0 "$mmk" torrent verify out/t15.torrent data || fail "the copy does not verify"

# ---- one corrupted byte: exactly its piece --------------------------------------
boff=$(file_offset out/t15.torrent tree/big.bin)
for at in 0 100000 299999; do
  cp -r data corrupt; flip_byte corrupt/tree/big.bin "$at"
  want=$(( (boff + at) / 32768 ))
  expect 1 "$mmk" --json torrent verify out/t15.torrent corrupt
  [ "$(echo "$out" | json_field bad_pieces)" = "[$want]" ] ||
    fail "byte $at of big.bin: bad pieces $(echo "$out" | json_field bad_pieces), want [$want]"
  [ "$(echo "$out" | json_field bad)" = 1 ] || fail "more than one bad piece"
  echo "$out" | grep -q '"path":"tree/big.bin","state":"ok","length":300000,"size":300000,"bad_pieces":1' ||
    fail "big.bin not reported as touched by the bad piece"
  expect 1 "$mmk" torrent verify --pin -j 1 out/t15.torrent corrupt
  echo "$out" | grep -q "^bad piece $want: .*tree/big.bin" || fail "text report: $out"
  rm -rf corrupt
done
# a 1-byte file: the piece holding it, and the file named
ooff=$(file_offset out/t15.torrent tree/one)
cp -r data corrupt; printf z > corrupt/tree/one
expect 1 "$mmk" --json torrent verify out/t15.torrent corrupt
[ "$(echo "$out" | json_field bad_pieces)" = "[$(( ooff / 32768 ))]" ] || fail "1-byte file: $out"
echo "$out" | grep -q '"path":"tree/one","state":"ok","length":1,"size":1,"bad_pieces":1' ||
  fail "1-byte file not named"
rm -rf corrupt
ok "a corrupted byte reports exactly its piece"

# ---- missing and short files: their pieces, the rest still verified -----------------
doff=$(file_offset out/t15.torrent tree/a/b/c/deep.bin)
first=$(( doff / 32768 )) last=$(( (doff + 70000 - 1) / 32768 ))
cp -r data miss; rm miss/tree/a/b/c/deep.bin
expect 1 "$mmk" --json torrent verify out/t15.torrent miss
[ "$(echo "$out" | json_field missing_ranges)" = "[[$first,$last]" ] ||
  fail "missing deep.bin: ranges $(echo "$out" | json_field missing_ranges), want [[$first,$last]]"
[ "$(echo "$out" | json_field good)" = $(( pieces - (last - first + 1) )) ] ||
  fail "the other pieces were not all verified"
echo "$out" | grep -q '"path":"tree/a/b/c/deep.bin","state":"missing"' || fail "deep.bin not reported"
expect 1 "$mmk" torrent verify out/t15.torrent miss
echo "$out" | grep -q '^file tree/a/b/c/deep.bin: missing$' || fail "text: missing file line: $out"
echo "$out" | grep -q "^missing pieces $first-$last: " || fail "text: missing pieces line: $out"
rm -rf miss
cp -r data miss; truncate -s 1000 miss/tree/big.bin
expect 1 "$mmk" --json torrent verify out/t15.torrent miss
echo "$out" | grep -q '"state":"short","length":300000,"size":1000' || fail "short file not reported"
rm -rf miss
cp -r data miss; rm miss/tree/empty0                      # no bytes, but still missing
expect 1 "$mmk" --json torrent verify out/t15.torrent miss
[ "$(echo "$out" | json_field missing)" = 0 ] || fail "an empty file made pieces missing"
echo "$out" | grep -q '"path":"tree/empty0","state":"missing"' || fail "missing empty file not reported"
rm -rf miss
expect 3 "$mmk" torrent verify out/t15.torrent "$tmp/no-such-dir"
expect 1 "$mmk" torrent verify out/t15.torrent data/tree   # the torrent's own directory
echo "$err" | grep -q 'hint: DATA_DIR is the directory that holds "tree"' || fail "no hint: $err"
ok "missing files report their pieces"

# ---- nothing outside DATA_DIR: a symbolic link out of it is refused -----------------
mkdir -p outside; cp data/tree/big.bin outside/big.bin
cp -r data esc; rm esc/tree/big.bin; ln -s "$tmp/outside/big.bin" esc/tree/big.bin
expect 1 "$mmk" --json torrent verify out/t15.torrent esc
echo "$out" | grep -q '"path":"tree/big.bin","state":"refused"' || fail "a link out of DATA_DIR was followed"
expect 1 "$mmk" torrent verify out/t15.torrent esc
echo "$out" | grep -q 'symbolic link leaves the data directory' || fail "text: no refusal line"
rm -rf esc

# ---- malicious and malformed torrents ------------------------------------------------
h20=aaaaaaaaaaaaaaaaaaaa
evil() { # NAME PATH-LIST-BENCODE
  printf 'd4:infod5:filesld6:lengthi1e4:pathl%seee4:name%s12:piece lengthi16384e6:pieces20:%see' \
    "$2" "$1" "$h20" > "out/evil.torrent"
}
check_evil() { # WHAT WORDS
  expect 1 "$mmk" torrent info out/evil.torrent && { echo "$err" | grep -q "$2" || fail "$1: message: $err"; }
  expect 1 "$mmk" torrent verify out/evil.torrent data && { echo "$err" | grep -q "$2" || fail "$1: $err"; }
}
evil 1:x '2:..6:passwd'; check_evil '".." component' 'unsafe path'
evil 1:x '1:a2:..2:..6:passwd'; check_evil '"a/../.."' 'unsafe path'
evil 1:x '0:3:etc6:passwd'; check_evil 'absolute path' 'empty path component'
evil 1:x '1:a0:1:b'; check_evil 'empty component' 'empty path component'
evil 1:x '11:/etc/passwd'; check_evil 'absolute component' 'absolute path'
evil 1:x '3:a/b'; check_evil 'slash inside' "'/' inside"
printf 'd4:infod5:filesld6:lengthi1e4:pathl3:a\0beee4:name1:x12:piece lengthi16384e6:pieces20:%see' \
  "$h20" > out/evil.torrent
check_evil 'NUL byte' 'NUL'
evil 2:.. '1:x'; check_evil 'name ".."' 'unsafe name'
evil 1:. '1:x'; check_evil 'name "."' 'unsafe name'
head -c 100 out/t15.torrent > out/trunc.torrent
expect 1 "$mmk" torrent info out/trunc.torrent && { echo "$err" | grep -q 'not valid bencode' || fail "truncated: $err"; }
expect 3 "$mmk" torrent info out/no-such.torrent
expect 2 "$mmk" torrent verify out/t15.torrent
expect 2 "$mmk" torrent frobnicate
ok "malicious and malformed torrents refused"

# ---- interoperability with mktorrent ---------------------------------------------------
if [ "$have_mktorrent" = 1 ]; then
  # Our create == mktorrent's info-hash, for the same tree and piece length.
  for l in 15 16 18 20; do
    mktorrent -d -l "$l" -a http://tracker.invalid/a -o "out/mk$l.torrent" src/tree >/dev/null 2>&1 ||
      { fail "mktorrent -l $l"; continue; }
    "$mmk" torrent create -q -d -l "$l" -a http://tracker.invalid/a -o "out/mmk$l.torrent" src/tree ||
      { fail "mmk create -l $l"; continue; }
    [ "$(info_hash "out/mk$l.torrent")" = "$(info_hash "out/mmk$l.torrent")" ] ||
      fail "-l $l: info-hash differs from mktorrent's"
    # the other direction: mktorrent's torrent verifies with mmk ...
    expect 0 "$mmk" torrent verify "out/mk$l.torrent" src || fail "mktorrent's -l $l torrent does not verify"
    # ... and both read back the same with `mmk torrent info` (name, sizes, files)
    diff <("$mmk" torrent info "out/mk$l.torrent" | grep -v '^created by') \
         <("$mmk" torrent info "out/mmk$l.torrent" | grep -v '^created by') >/dev/null ||
      fail "-l $l: mmk torrent info differs"
  done
  ok "mktorrent: same info-hash for -l 15 16 18 20; mktorrent's torrents verify"
  # single file, trailing slash, private and source, an empty directory, an empty file
  mktorrent -d -l 15 -a x -o out/mk-single.torrent src/tree/big.bin >/dev/null 2>&1
  "$mmk" torrent create -q -d -l 15 -a x -o out/mmk-single.torrent src/tree/big.bin
  [ "$(info_hash out/mk-single.torrent)" = "$(info_hash out/mmk-single.torrent)" ] || fail "single file"
  expect 0 "$mmk" torrent verify out/mk-single.torrent src/tree || fail "single file: verify"
  mktorrent -d -p -s SRC -l 16 -a x -o out/mk-priv.torrent src/tree/ >/dev/null 2>&1
  "$mmk" torrent create -q -d -p -s SRC -l 16 -a x -o out/mmk-priv.torrent src/tree/
  [ "$(info_hash out/mk-priv.torrent)" = "$(info_hash out/mmk-priv.torrent)" ] || fail "private + source"
  mkdir -p src/emptydir2; : > src/zero
  mktorrent -d -a x -o out/mk-empty.torrent src/emptydir2 >/dev/null 2>&1
  "$mmk" torrent create -q -d -a x -o out/mmk-empty.torrent src/emptydir2
  [ "$(info_hash out/mk-empty.torrent)" = "$(info_hash out/mmk-empty.torrent)" ] || fail "empty dir"
  mktorrent -d -a x -o out/mk-zero.torrent src/zero >/dev/null 2>&1
  "$mmk" torrent create -q -d -a x -o out/mmk-zero.torrent src/zero
  [ "$(info_hash out/mk-zero.torrent)" = "$(info_hash out/mmk-zero.torrent)" ] || fail "empty file"
  ok "mktorrent: single file, trailing slash, -p -s, empty dir, empty file"
  # A mktorrent torrent with a corrupted byte: exactly that piece.
  cp -r data corrupt; flip_byte corrupt/tree/big.bin 5000
  want=$(( ($(file_offset out/mk15.torrent tree/big.bin) + 5000) / 32768 ))
  expect 1 "$mmk" --json torrent verify out/mk15.torrent corrupt
  [ "$(echo "$out" | json_field bad_pieces)" = "[$want]" ] || fail "mktorrent torrent, corrupted byte"
  rm -rf corrupt
fi

# Our own torrents verify (the other direction without mktorrent).
expect 0 "$mmk" torrent verify out/t15.torrent src || fail "own torrent"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
if [ "$have_mktorrent" = 0 ]; then
  echo "mktorrent not installed: interoperability not checked (skipped)"
  exit 77
fi
echo "all torrent checks passed"
