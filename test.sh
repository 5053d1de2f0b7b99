#!/usr/bin/env bash
# Runs the whole test suite (needs ../shared beside the checkout for the golden tests).
set -euo pipefail
cd "$(dirname "$0")"
dotnet test EdgeLlm.sln -c Release -p:RequireVulkanShaders=true --logger "console;verbosity=detailed" "$@"
