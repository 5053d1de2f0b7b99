#!/usr/bin/env bash
# Builds the NativeAOT `edgellm` for one device profile (a folder under devices/).
#   ./devices/build.sh raspberry-pi-5 [-o OUTDIR] [extra dotnet publish arguments...]
# Output: artifacts/devices/PROFILE/edgellm (one file; edgellm.dbg beside it holds the symbols).
# Each profile builds in its own artifacts folder (--artifacts-path), so profiles that share a RID
# (x64-avx2, x64-avx512, x64-portable) never reuse each other's native code, and the checkout's
# own bin/ and obj/ (used by `dotnet test`) are left alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
usage() { echo "usage: $0 PROFILE [-o OUTDIR] [dotnet publish args...]; profiles: $(cd "$repo/devices" && ls -d */ | tr -d / | tr '\n' ' ')" >&2; exit 2; }
[ $# -ge 1 ] || usage
profile="$1"; shift
props="$repo/devices/$profile/device.props"
[ -f "$props" ] || { echo "build.sh: no profile '$profile' ($props missing)" >&2; usage; }
out="$repo/artifacts/devices/$profile"
if [ "${1:-}" = "-o" ]; then out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2; fi

# The RID decides which cross toolchain is needed; read it from the profile.
rid="$(sed -n 's:.*<RuntimeIdentifier[^>]*>\(.*\)</RuntimeIdentifier>.*:\1:p' "$props" | head -1)"
host="$(uname -m)"
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (apt package $2)"); }
need clang clang
case "$rid" in
  linux-arm64)
    if [ "$host" != aarch64 ]; then
      need aarch64-linux-gnu-ld binutils-aarch64-linux-gnu
      need ld.lld lld
      [ -d /usr/aarch64-linux-gnu/lib ] || missing+=("/usr/aarch64-linux-gnu/lib (apt packages libc6-dev-arm64-cross gcc-aarch64-linux-gnu)")
    fi ;;
  linux-bionic-arm64)
    [ -n "${ANDROID_NDK_ROOT:-}" ] || missing+=("ANDROID_NDK_ROOT (the Android NDK; see devices/android-arm64/README.md)") ;;
esac
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: cannot build $profile ($rid) on this $host machine; missing:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 3
fi

extra=()
if [ "$rid" = linux-bionic-arm64 ]; then
  # NativeAOT links Bionic executables with the NDK's clang (API level 21+).
  ndkbin="$(echo "$ANDROID_NDK_ROOT"/toolchains/llvm/prebuilt/*/bin)"
  export PATH="$ndkbin:$PATH"
  extra+=(-p:CppCompilerAndLinker=clang -p:DisableUnsupportedError=true -p:PublishAotUsingRuntimePack=true)
fi

# The models the profile specializes (<EdgeLlmSpecializedModel Include="NAME" Quantizations="Q4_0;..."/>)
# become the source generator's selection, e.g. tinyllama-1.1b-q4_0,tinyllama-1.1b-q4_k_m.
# MSBuild splits a command-line -p:NAME=VALUE at both ';' and ',', so the list goes in with its
# separators escaped (%3B); MSBuild unescapes them before the generator reads the property.
specs="$(sed -n 's:.*<EdgeLlmSpecializedModel Include="\([^"]*\)" Quantizations="\([^"]*\)".*:\1 \2:p' "$props" |
  while read -r name quants; do
    for q in ${quants//;/ }; do printf '%s-%s,' "$name" "$(echo "$q" | tr 'A-Z' 'a-z')"; done
  done)"
specs="${specs%,}"
[ -n "$specs" ] && extra+=(-p:EdgeLlmSpecializations="${specs//,/%3B}")

mkdir -p "$out"
echo "build.sh: $profile -> $rid, output $out, specializations: ${specs:-all}" >&2
dotnet publish "$repo/src/EdgeLlm.Cli/EdgeLlm.Cli.csproj" -c Release -nologo \
  -p:EdgeLlmDevice="$profile" \
  --artifacts-path "$repo/artifacts/build/$profile" \
  -o "$out" "${extra[@]}" "$@"
ls -l "$out/edgellm" >&2
