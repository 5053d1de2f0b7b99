#!/usr/bin/env bash
# Proves the NuGet package works as README's ".NET API" section says: packs src/EdgeLlm into a local
# feed, checks the package (metadata, readme, licence, no test data, no dependency on the build-time
# source generator), creates a console project that references the package by version, whose Program.cs
# is the README's example verbatim, restores it from the local feed, builds it and runs it on stories260K.
#
# usage: tests/packaging/pack-and-run.sh [WORK_DIR]   (default: a fresh temp folder, removed afterwards)
# Offline: the package's dependencies come from the local NuGet cache (~/.nuget/packages, used as a
# folder feed); nuget.org is listed too and failures to reach it are ignored.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${EDGELLM_SHARED:-$root/../shared}
model=$shared/models/stories260K.gguf
[ -f "$model" ] || { echo "pack-and-run.sh: $model is missing (../shared reference data; set EDGELLM_SHARED)" >&2; exit 2; }
if [ $# -ge 1 ]; then work=$1; rm -rf "$work"; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# EDGELLM_PACK_NO_BUILD=1 packs the existing build of EDGELLM_PACK_CONFIGURATION (default Release) without
# building or restoring: the xunit test sets it, since its own build just produced that output and a build
# here could race with the NativeAOT publish that NativeAbiTests runs at the same time on src/EdgeLlm/obj.
config=${EDGELLM_PACK_CONFIGURATION:-Release}
pack_args=(-c "$config" -o "$work/feed" --disable-build-servers -nologo)
[ "${EDGELLM_PACK_NO_BUILD:-0}" = 1 ] && pack_args+=(--no-build)
echo "== pack ($config${EDGELLM_PACK_NO_BUILD:+, no build})"
dotnet pack "$root/src/EdgeLlm" "${pack_args[@]}" >"$work/pack.log" 2>&1 \
  || { cat "$work/pack.log" >&2; echo "pack-and-run.sh: dotnet pack failed" >&2; exit 1; }
pkgs=("$work"/feed/EdgeLlm.*.nupkg)
[ ${#pkgs[@]} -eq 1 ] && [ -f "${pkgs[0]}" ] || { echo "pack-and-run.sh: expected one EdgeLlm.*.nupkg, found: ${pkgs[*]}" >&2; exit 1; }
nupkg=${pkgs[0]}
version=$(basename "$nupkg" .nupkg); version=${version#EdgeLlm.}
echo "$(basename "$nupkg"): $(stat -c %s "$nupkg") bytes"

echo "== package contents"
python3 - "$nupkg" <<'PY'
import sys, zipfile, re
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
fail = []
nuspec = z.read([n for n in names if n.endswith('.nuspec')][0]).decode()
def has(pattern, what):
    if not re.search(pattern, nuspec): fail.append(f"nuspec: {what} missing")
has(r'<license type="expression">MIT</license>', 'license expression MIT')
has(r'<readme>README.md</readme>', 'readme')
has(r'<description>[^<]{40,}</description>', 'description')
has(r'<repository type="git"', 'repository type git')
has(r'<dependency id="Microsoft.Extensions.AI.Abstractions"', 'dependency Microsoft.Extensions.AI.Abstractions')
has(r'<dependency id="System.Numerics.Tensors"', 'dependency System.Numerics.Tensors')
if 'EdgeLlm.Generators' in nuspec: fail.append('nuspec: depends on EdgeLlm.Generators (a build-time source generator)')
if 'README.md' not in names: fail.append('README.md not in the package')
if 'lib/net10.0/EdgeLlm.Core.dll' not in names: fail.append('lib/net10.0/EdgeLlm.Core.dll not in the package')
data = [n for n in names if re.search(r'\.(gguf|f32|jinja|json)$', n) or 'shared/' in n or 'test' in n.lower()]
if data: fail.append(f'test data or test files in the package: {data}')
for n in sorted(names): print('  ' + n)
for f in fail: print('FAIL ' + f)
sys.exit(1 if fail else 0)
PY

echo "== console app from README's example"
app=$work/app
mkdir -p "$app"
# The first ```csharp block after the "## .NET API" heading, verbatim.
awk '/^## \.NET API/ { in_section = 1; next }
     in_section && /^## / { exit }
     in_section && /^```csharp/ { in_code = 1; next }
     in_code && /^```/ { exit }
     in_code { print }' "$root/README.md" > "$app/Program.cs"
[ -s "$app/Program.cs" ] || { echo "pack-and-run.sh: no csharp block found under '## .NET API' in README.md" >&2; exit 1; }
cat > "$app/App.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="EdgeLlm" Version="$version" />
  </ItemGroup>
</Project>
XML
# Stop MSBuild's upward search, so that a work folder inside the repository (artifacts/) does not pick up
# the repository's Directory.Build.props and central package versions: the app is a stranger's project.
echo '<Project />' > "$app/Directory.Build.props"
echo '<Project />' > "$app/Directory.Build.targets"
echo '<Project />' > "$app/Directory.Packages.props"
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cat > "$app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config>
    <!-- A private packages folder, so that this EdgeLlm build is never confused with one cached earlier under the same version. -->
    <add key="globalPackagesFolder" value="$work/packages" />
  </config>
  <packageSources>
    <clear />
    <add key="edgellm-local" value="$work/feed" />
    <add key="local-cache" value="$cache" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
echo "== restore, build, run ($app)"
(cd "$app" && dotnet restore --ignore-failed-sources --disable-build-servers -nologo >"$work/restore.log" 2>&1) \
  || { cat "$work/restore.log" >&2; echo "pack-and-run.sh: restore failed" >&2; exit 1; }
(cd "$app" && dotnet build -c Release --no-restore --disable-build-servers -nologo >"$work/build.log" 2>&1) \
  || { cat "$work/build.log" >&2; echo "pack-and-run.sh: build failed" >&2; exit 1; }
grep -q "EdgeLlm.Core.dll" <(ls "$app/bin/Release/net10.0") || { echo "pack-and-run.sh: EdgeLlm.Core.dll not in the app's output" >&2; exit 1; }
(cd "$app" && dotnet "bin/Release/net10.0/App.dll" "$model") > "$work/run.txt" 2>&1 \
  || { cat "$work/run.txt" >&2; echo "pack-and-run.sh: the example exited with an error" >&2; exit 1; }
cat "$work/run.txt"
echo "pack-and-run.sh: the README example ran from the package ($(basename "$nupkg"))"
