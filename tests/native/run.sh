#!/usr/bin/env bash
# Builds libedgellm.so with NativeAOT, checks that it exports exactly the functions edgellm.h declares,
# compiles the C test (test_edgellm.c) against the header and runs it on stories260K (once with the
# system's Vulkan driver, once with none visible), then runs the README's Python ctypes example.
#
# usage: tests/native/run.sh [OUT_DIR]     (default: artifacts/native; ../shared must be beside the checkout,
#                                           or EDGELLM_SHARED must point at it)
# Needs: the .NET SDK, a C compiler and linker (gcc or clang; NativeAOT links with it), objcopy, nm
# (binutils), the C library headers, glslangValidator (the Vulkan shaders) and a Vulkan driver
# (lavapipe: mesa-vulkan-drivers): apt-get install -y $(cat .ci/apt-packages)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/artifacts/native}
shared=${EDGELLM_SHARED:-$root/../shared}
header=$root/src/EdgeLlm.Native/edgellm.h

missing=()
for tool in gcc nm objcopy dotnet; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing tools: ${missing[*]}" >&2
  mapfile -t pkgs < "$root/.ci/apt-packages"
  echo "run.sh: NativeAOT and this test need a C toolchain: apt-get install -y ${pkgs[*]}" >&2
  exit 2
fi
for f in "$shared/models/stories260K.gguf" "$shared/models/syn-qwen2-q8_0.gguf" "$shared/golden/stories260K.story.json"; do
  [ -f "$f" ] || { echo "run.sh: $f is missing (../shared reference data; set EDGELLM_SHARED)" >&2; exit 2; }
done

mkdir -p "$out"
lib=$out/lib
echo "== publish (NativeAOT) -> $lib"
log=$out/publish.log
if ! dotnet publish "$root/src/EdgeLlm.Native" -c Release -r linux-x64 -p:PublishAot=true -p:RequireVulkanShaders=true -o "$lib" \
     --disable-build-servers -nologo >"$log" 2>&1; then
  cat "$log" >&2
  echo "run.sh: dotnet publish failed" >&2
  exit 1
fi
# AOT/trim analysis warnings (ILxxxx) mean code the compiler could not prove safe: treat them as failures.
if grep -E "warning IL[0-9]+" "$log" >&2; then
  echo "run.sh: the NativeAOT publish reported AOT/trim warnings (above)" >&2
  exit 1
fi
so=$lib/libedgellm.so
[ -f "$so" ] || { echo "run.sh: $so was not produced" >&2; ls -la "$lib" >&2; exit 1; }
size=$(stat -c %s "$so")
echo "libedgellm.so: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }')), 0 AOT/trim warnings"
# Size budget: the library (CPU engine + Vulkan backend + its SPIR-V shaders) must stay small enough to embed.
max_bytes=$((10 * 1000 * 1000))
[ "$size" -le "$max_bytes" ] || { echo "run.sh: libedgellm.so is $size bytes, over its budget of $max_bytes (10 MB)" >&2; exit 1; }

echo "== exports vs edgellm.h"
# Declarations: every "EDGELLM_API <type> edgellm_name(" in the header. Exports: nm -D prints name@@VERSION.
declared=$(grep -E '^EDGELLM_API ' "$header" | grep -oE '\bedgellm_[a-z0-9_]+\s*\(' | tr -d '( ' | sort -u)
exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | grep -E '^edgellm_' | sort -u)
missing_exports=$(comm -23 <(echo "$declared") <(echo "$exported"))
undeclared=$(comm -13 <(echo "$declared") <(echo "$exported"))
echo "declared $(echo "$declared" | wc -l), exported $(echo "$exported" | wc -l)"
if [ -n "$missing_exports" ] || [ -n "$undeclared" ]; then
  [ -n "$missing_exports" ] && echo "declared in edgellm.h but not exported: $missing_exports" >&2
  [ -n "$undeclared" ] && echo "exported but not declared in edgellm.h: $undeclared" >&2
  exit 1
fi

echo "== compile the C test"
gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -Wall -Wextra -Werror -pedantic -I "$root/src/EdgeLlm.Native" \
    "$root/tests/native/test_edgellm.c" -o "$out/test_edgellm" -L "$lib" -ledgellm -lm -lpthread -Wl,-rpath,"$lib"
if command -v g++ >/dev/null 2>&1; then
  # The header must also be valid C++ (extern "C" guard).
  echo '#include "edgellm.h"' | g++ -x c++ -std=c++17 -Wall -Werror -fsyntax-only -I "$root/src/EdgeLlm.Native" -
fi

echo "== a mixture-of-experts model for the C test (edgellm synth --like granite-3.0-1b-a400m --type Q4_0)"
# NativeAbiTests writes the file in its own process and names it in EDGELLM_TEST_MOE: a `dotnet run` here would build
# src/EdgeLlm and src/EdgeLlm.Cli while the other test assemblies use (and the packaging test packs) that build.
moe_owned=0
if [ -n "${EDGELLM_TEST_MOE:-}" ] && [ -f "$EDGELLM_TEST_MOE" ]; then
  moe=$EDGELLM_TEST_MOE
  echo "(written by the caller: $moe)"
else
  moe="$out/granite-moe-q4_0.gguf"; moe_owned=1
  dotnet run --project "$root/src/EdgeLlm.Cli" -c Release -- synth --like granite-3.0-1b-a400m --type Q4_0 -o "$moe" 2>&1 | tail -1
fi
[ -f "$moe" ] || { echo "run.sh: the mixture-of-experts model $moe was not written" >&2; exit 1; }

echo "== run the C test"
# Needs a Vulkan driver (CI: mesa-vulkan-drivers' lavapipe): the EDGELLM_BACKEND_VULKAN checks fail without one.
# EDGELLM_TEST_BERT (a BERT encoder NativeAbiTests writes) passes through when set: the encoder checks run; so do
# EDGELLM_TEST_RERANKER and EDGELLM_TEST_RERANK_SCORES (a reranker and the scores .NET gives): the reranker checks, and
# EDGELLM_TEST_DECODER_RERANKER with EDGELLM_TEST_DECODER_RERANK_SCORES (a tiny Qwen3-Reranker): the decoder reranker checks.
EDGELLM_TEST_MOE="$moe" "$out/test_edgellm" "$shared/models/stories260K.gguf" "$shared/golden/stories260K.story.json" "$out"
[ "$moe_owned" = 1 ] && rm -f "$moe"

echo "== run the C test without a Vulkan driver (VK_ICD_FILENAMES / VK_DRIVER_FILES point nowhere)"
# The Vulkan loader reads these when the process creates its first instance; the loader's own
# "Found no drivers" complaint on stderr is expected.
VK_ICD_FILENAMES=/nonexistent/icd.json VK_DRIVER_FILES=/nonexistent/icd.json \
  "$out/test_edgellm" --no-vulkan-driver "$shared/models/stories260K.gguf" "$shared/golden/stories260K.story.json" "$out"

echo "== README Python example"
if command -v python3 >/dev/null 2>&1; then
  EDGELLM_LIB=$so python3 "$root/tests/native/example.py" "$shared/models/stories260K.gguf" > "$out/example.txt"
  cat "$out/example.txt"
  grep -q "Once upon a time, there was a little girl named Lily" "$out/example.txt" \
    || { echo "run.sh: the Python example did not print the greedy story" >&2; exit 1; }
else
  echo "python3 not found: Python example not run"
fi
echo "run.sh: all native checks passed"
