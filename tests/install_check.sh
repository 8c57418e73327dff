#!/usr/bin/env bash
# Install into a scratch prefix, then build the examples the way a user would:
# with pkg-config (shared library) and with find_package(mmkit) in CMake; run
# them; and check that the shared library exports only mmk_ symbols.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmkit-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp/prefix"/lib* | head -n1)

# pkg-config, shared library
export PKG_CONFIG_PATH=$libdir/pkgconfig
cp "$src"/examples/*.c "$src"/examples/Makefile "$tmp/"
make -s -C "$tmp" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/write_sync" "$tmp/data" 100000
test "$(stat -c %s "$tmp/data")" = 100000
out=$(LD_LIBRARY_PATH=$libdir "$tmp/count_lines" "$src/README.md")
case "$out" in [0-9]*) ;; *) echo "count_lines printed '$out'"; exit 1 ;; esac

# find_package(mmkit), static library target
mkdir -p "$tmp/cm"
cat > "$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(mmkit REQUIRED)
add_executable(count_lines $tmp/count_lines.c)
target_link_libraries(count_lines PRIVATE mmkit::mmkit_static)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
"$tmp/cm/build/count_lines" "$src/README.md" >/dev/null

# only mmk_ symbols leave the shared library
bad=$(nm -D --defined-only "$libdir/libmmkit.so" | awk '$2 ~ /[TDBRVW]/ {print $3}' \
      | sed 's/@.*//' | grep -v '^mmk_' | grep -v '^MMKIT_' || true)
if [ -n "$bad" ]; then echo "unexpected exported symbols: $bad"; exit 1; fi
readelf -d "$libdir/libmmkit.so" | grep -q 'SONAME.*libmmkit.so.0'
# man pages, with a link page per function
for page in man1/mmk.1 man3/mmkit.3 man3/mmk_map.3 man3/mmk_guard.3 man3/mmk_map_open.3 man3/mmk_guard_copy.3; do
  test -f "$tmp/prefix/share/man/$page" || { echo "missing man page $page"; exit 1; }
done
echo "install check passed"
