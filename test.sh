#!/usr/bin/env bash
# Runs the whole test suite (needs ../shared beside the checkout for the golden tests).
set -euo pipefail
cd "$(dirname "$0")"

# System packages the tests need (NativeAOT toolchain, arm64 cross tools + qemu, Vulkan's
# software driver, ...), one per line in .ci/apt-packages; installed only when missing.
if [ -f .ci/apt-packages ]; then
  mapfile -t pkgs < <(grep -vE '^\s*(#|$)' .ci/apt-packages | sort -u)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  # The server tests run the openai npm client (tests/server): Debian's nodejs lacks npm (its own
  # package), while NodeSource's nodejs bundles it, so npm is installed only when the command is missing.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

dotnet test EdgeLlm.sln -c Release -p:RequireVulkanShaders=true --logger "console;verbosity=detailed" "$@"
