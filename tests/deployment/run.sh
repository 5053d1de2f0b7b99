#!/usr/bin/env bash
# Deployment checks (CI): builds the NativeAOT `edgellm` for linux-x64 (x86-64-v3) and, cross-compiled,
# linux-arm64; runs the stories260K greedy story on each and compares it with llama.cpp's golden
# text; runs the arm64 binary under qemu as a Raspberry Pi 5 (cortex-a76: NEON + dot product) and
# a Raspberry Pi 4 (cortex-a72: NEON only) and checks the kernel path `edgellm info` names; runs
# every CLI command from the x64 binary; checks the binary size; builds the x64-avx2 device profile
# through devices/build.sh and checks that its specializations are all compiled in and used.
# Prints one line per check ("ok   NAME" / "FAIL NAME: why") and ends with "N passed, N failed";
# exits nonzero when a check failed.
#   tests/deployment/run.sh [--no-build]   (--no-build: reuse artifacts/deployment/*/edgellm)
# Needs: clang lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
# qemu-user-static (see .ci/apt-packages) and ../shared beside the checkout.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${EDGELLM_SHARED:-$repo/../shared}"
art="$repo/artifacts/deployment"
model="$shared/models/stories260K.gguf"
golden="$shared/golden/stories260K.story.json"
prompt="Once upon a time"
max_mb=15
build=1; [ "${1:-}" = "--no-build" ] && build=0
passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# --- prerequisites ------------------------------------------------------------------------
for t in dotnet clang ld.lld aarch64-linux-gnu-ld qemu-aarch64-static qemu-x86_64-static python3; do
  if command -v "$t" >/dev/null 2>&1; then ok "tool $t"; else fail "tool $t" "not on PATH (apt packages: .ci/apt-packages)"; fi
done
if [ -f "$model" ] && [ -f "$golden" ]; then ok "shared data"; else fail "shared data" "$model or $golden missing"; finish; fi
# Expected stdout of `run`: the prompt, the golden greedy text, one newline.
python3 -c 'import json,sys; sys.stdout.write(sys.argv[2] + json.load(open(sys.argv[1]))["greedy_text"] + "\n")' "$golden" "$prompt" > "$tmp/expected.txt"

# figure OURS.f32 REFERENCE.f32 BOUND : prints max |ours - reference| / std(reference) of two float32 logit files
# of the same size; succeeds when it is at most BOUND.
figure() {
  python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
if len(a) != len(b): sys.exit(1)
n = len(b) // 4
x = struct.unpack(f"<{n}f", a); y = struct.unpack(f"<{n}f", b)
mean = sum(y) / n; std = (sum((q - mean) ** 2 for q in y) / n) ** 0.5
fig = max(abs(p - q) for p, q in zip(x, y)) / std
print(f"{fig:.4g}")
sys.exit(0 if fig <= float(sys.argv[3]) else 1)
PY
}

# encoder NAME RUNNER... : the BERT encoder's embedding against the x64 binary's (NEON's 4 x 2 f16 tiles and
# 128-bit attention against AVX-512's: float order aside, which flips a few f16 roundings of the activations:
# 5.4e-5 on 2026-12-02).
bert_text="Hello, World! The quick brown fox jumps over the lazy dog. Café naïve 中文"
encoder() {
  local name="$1"; shift
  local fig=
  if [ ! -f "$tmp/bert-x64.json" ]; then fail "embed $name" "no x64 reference (the x64 encoder check failed)"; return; fi
  if "$@" embed -m "$tmp/minilm.gguf" -p "$bert_text" > "$tmp/bert.json" 2> "$tmp/bert.log" &&
     fig=$(python3 -c 'import json,sys
a=json.load(open(sys.argv[1]))["data"][0]["embedding"]; b=json.load(open(sys.argv[2]))["data"][0]["embedding"]
d=max(abs(x-y) for x,y in zip(a,b)) if len(a)==len(b) else 1
print(f"{d:.3g}"); sys.exit(0 if d<=3e-4 else 1)' "$tmp/bert.json" "$tmp/bert-x64.json"); then
    ok "embed $name (all-minilm-l6-v2 F16 against linux-x64: max difference $fig <= 3e-4)"
  else fail "embed $name" "difference ${fig:-n/a}: $(tail -2 "$tmp/bert.log" | tr '\n' ' ')"; fi
}

# mxfp4 NAME RUNNER... : the MXFP4 file the x64 checks wrote, its logits against the x64 binary's (the NEON
# table-lookup dots and 128-bit tiles against the AVX2 ones: the same integer sums, float order aside).
mxfp4() {
  local name="$1"; shift
  local fig=
  if [ ! -f "$tmp/mxfp4-x64.f32" ]; then fail "MXFP4 logits $name" "no x64 reference (the x64 MXFP4 check failed)"; return; fi
  if "$@" logits -m "$tmp/mxfp4.gguf" --ids "$mxids" -o "$tmp/mx.f32" > "$tmp/mx.log" 2>&1 &&
     fig=$(figure "$tmp/mx.f32" "$tmp/mxfp4-x64.f32" 1e-3); then ok "MXFP4 logits $name (syn-llama MXFP4 against linux-x64: figure $fig <= 1e-3)"
  else fail "MXFP4 logits $name" "figure ${fig:-n/a}: $(tail -2 "$tmp/mx.log" | tr '\n' ' ')"; fi
}

# --- builds ---------------------------------------------------------------------------------
publish() { # name, dotnet publish args...
  local name="$1"; shift
  if [ "$build" -eq 1 ]; then
    local t0=$SECONDS
    if dotnet publish "$repo/src/EdgeLlm.Cli/EdgeLlm.Cli.csproj" -c Release -nologo -p:PublishAot=true \
         --artifacts-path "$repo/artifacts/build/deployment-$name" \
         -o "$art/$name" "$@" > "$tmp/publish-$name.log" 2>&1; then
      # Trim/AOT analysis warnings would fail the build (warnings are errors); count them anyway.
      local w; w=$(grep -Eo 'warning (IL|AOT)[0-9]+' "$tmp/publish-$name.log" | sort -u | wc -l)
      if [ "$w" -eq 0 ]; then ok "publish $name ($((SECONDS - t0)) s, 0 trim/AOT warnings)"
      else fail "publish $name" "$w trim/AOT warnings"; grep -E 'warning (IL|AOT)' "$tmp/publish-$name.log" | sort -u | head -20; fi
    else
      fail "publish $name" "dotnet publish failed:"; tail -20 "$tmp/publish-$name.log"; return 1
    fi
  fi
  [ -x "$art/$name/edgellm" ] || { fail "binary $name" "$art/$name/edgellm missing"; return 1; }
  local size; size=$(stat -c %s "$art/$name/edgellm")
  if [ "$size" -le $((max_mb * 1000 * 1000)) ]; then ok "size $name $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}') MB (<= $max_mb MB)"
  else fail "size $name" "$size bytes > $max_mb MB"; fi
}

# story NAME RUNNER... : the greedy story must equal the golden text.
story() {
  local name="$1"; shift
  if "$@" run -m "$model" -p "$prompt" -n 200 --temp 0 > "$tmp/story.txt" 2> "$tmp/story.err" && cmp -s "$tmp/story.txt" "$tmp/expected.txt"; then
    ok "story $name (golden greedy text, $(grep -Eo 'generation: .*' "$tmp/story.err"))"
  else
    fail "story $name" "output differs from the golden text: $(head -c 200 "$tmp/story.txt" | tr '\n' ' ') / $(tail -2 "$tmp/story.err" | tr '\n' ' ')"
  fi
}

# kernel NAME EXPECTED RUNNER... : `edgellm info` names the expected kernel path.
kernel() {
  local name="$1" want="$2"; shift 2
  local line; line=$("$@" info -m "$model" 2>&1 | grep '^kernel path:')
  if [ "$(echo "$line" | awk '{print $3}')" = "$want" ]; then ok "info $name: $line"
  else fail "info $name" "expected kernel path $want, got '$line'"; fi
}

# kquant NAME RUNNER... : K-quant files' logits (syn-llama Q4_K_M: Q4_K, Q6_K and Q5_K matrices;
# Q5_K_M: Q5_K and Q6_K) within the quantized golden bound of tests/EdgeLlm.Tests (figure = max
# |ours - llama.cpp| / std of llama.cpp's logits <= 0.10): the K-quant kernels this CPU runs, end to end.
kquant() {
  local name="$1"; shift
  local t km kg ids fig
  for t in q4_k_m q5_k_m; do
    km="$shared/models/syn-llama-$t.gguf"; kg="$shared/golden/syn-llama-$t.p1"
    ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_ids"])))' "$kg.json")
    fig=
    if "$@" logits -m "$km" --ids "$ids" -o "$tmp/kq.f32" > "$tmp/kq.log" 2>&1 &&
       fig=$(figure "$tmp/kq.f32" "$kg.logits.f32" 0.10); then ok "K-quant logits $name (syn-llama ${t^^} p1, figure $fig <= 0.10)"
    else fail "K-quant logits $name" "${t^^}: figure ${fig:-n/a} against $kg.logits.f32: $(tail -2 "$tmp/kq.log" | tr '\n' ' ')"; fi
  done
}

# --- linux-x64 (x86-64-v3) -------------------------------------------------------------------
if publish linux-x64 -r linux-x64; then
  x64="$art/linux-x64/edgellm"
  # This CPU's kernel path decides what the x86-64-v3 binary should say; a CPU without AVX2 cannot run it.
  if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    story linux-x64 "$x64"
    kernel linux-x64 avx2 "$x64"
    kquant linux-x64 "$x64"
    # The source generator's specializations survive NativeAOT (registered by module initializers,
    # no reflection): the default build specializes every config, stories260K's among them.
    if spec=$("$x64" info -m "$model" 2>&1 | grep '^forward pass:') && echo "$spec" | grep -q 'specialized: stories260k-f32'; then
      ok "info linux-x64: $spec"
    else fail "specialization linux-x64" "expected 'forward pass: specialized: stories260k-f32', got '$spec'"; fi
    ncfg=$(ls "$repo"/src/EdgeLlm/Specialized/Configs/*.json | wc -l)
    if line=$("$x64" info -m "$model" 2>&1 | grep '^specializations in this build:') && [ "$(echo "$line" | awk '{print $5}')" = "$ncfg" ]; then
      ok "info linux-x64: all $ncfg configs compiled in"
    else fail "specializations linux-x64" "expected all $ncfg configs, got '$line'"; fi
    # Every other CLI command from the AOT binary.
    if "$x64" tokenize -m "$model" -p "$prompt" > "$tmp/tok.txt" 2>&1 && [ "$(tr -d ' \n' < "$tmp/tok.txt")" = "[1,403,407,261,378]" ]; then ok "tokenize linux-x64"; else fail "tokenize linux-x64" "$(head -c 200 "$tmp/tok.txt")"; fi
    if "$x64" logits -m "$model" --ids 1,403,407,261,378 -o "$tmp/logits.f32" > /dev/null 2>&1 &&
       python3 - "$tmp/logits.f32" "$shared/golden/stories260K.story.logits.f32" <<'PY'
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()[:len(a)]
n = len(b) // 4
if len(a) != 5 * 512 * 4 or n != 5 * 512: sys.exit(1)
x = struct.unpack(f"<{n}f", a); y = struct.unpack(f"<{n}f", b)
sys.exit(0 if max(abs(p - q) for p, q in zip(x, y)) < 1e-3 else 1)
PY
    then ok "logits linux-x64 (5x512 within 1e-3 of golden)"; else fail "logits linux-x64" "missing or different from $shared/golden/stories260K.story.logits.f32"; fi
    # quantize: llama.cpp's own Q8_0 of syn-llama-f32 is the reference: same size, same tensor-type
    # table, same tensor data (the file's last 3 MB; the metadata before it names the writer).
    ref="$shared/models/syn-llama-q8_0.gguf"
    if "$x64" quantize "$shared/models/syn-llama-f32.gguf" "$tmp/q8.gguf" Q8_0 > "$tmp/q.log" 2>&1 &&
       [ "$(stat -c %s "$tmp/q8.gguf")" = "$(stat -c %s "$ref")" ] &&
       cmp -s <("$x64" info -m "$tmp/q8.gguf" | grep -E '^  [A-Z0-9_]+ +[0-9]+ tensors') <("$x64" info -m "$ref" | grep -E '^  [A-Z0-9_]+ +[0-9]+ tensors') &&
       cmp -s <(tail -c 3000000 "$tmp/q8.gguf") <(tail -c 3000000 "$ref"); then
      ok "quantize linux-x64 (syn-llama Q8_0: size, tensor types and data equal llama.cpp's)"
    else fail "quantize linux-x64" "differs from $ref: $(tail -2 "$tmp/q.log" | tr '\n' ' ')"; fi
    # MXFP4 (gpt-oss's expert type): every syn-llama matrix in MXFP4 (--pure), the logits the arm64 checks compare with.
    mxids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_ids"])))' "$shared/golden/syn-llama-f32.p1.json")
    if "$x64" quantize "$shared/models/syn-llama-f32.gguf" "$tmp/mxfp4.gguf" MXFP4_MOE --pure > "$tmp/mxq.log" 2>&1 &&
       "$x64" logits -m "$tmp/mxfp4.gguf" --ids "$mxids" -o "$tmp/mxfp4-x64.f32" > "$tmp/mxq.log" 2>&1; then
      ok "quantize + logits linux-x64 (syn-llama MXFP4_MOE --pure)"
    else fail "quantize MXFP4 linux-x64" "$(tail -2 "$tmp/mxq.log" | tr '\n' ' ')"; fi
    # A BERT encoder (all-MiniLM's shape, F16: the f16 tile kernel): its embedding, the one the arm64 checks compare with.
    if "$x64" synth --like all-minilm-l6-v2 --type F16 -o "$tmp/minilm.gguf" > "$tmp/bert.log" 2>&1 &&
       "$x64" embed -m "$tmp/minilm.gguf" -p "$bert_text" > "$tmp/bert-x64.json" 2>> "$tmp/bert.log" &&
       python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["data"][0]["embedding"]; assert len(v)==384 and abs(sum(x*x for x in v)-1)<1e-4' "$tmp/bert-x64.json"; then
      ok "synth + embed linux-x64 (all-minilm-l6-v2 F16: a unit vector of 384)"
    else fail "synth + embed linux-x64" "$(tail -2 "$tmp/bert.log" | tr '\n' ' ')"; fi
    if "$x64" bench -m "$model" -t 1 -p 16 -n 8 -r 1 --json > "$tmp/bench.json" 2> "$tmp/bench.err" && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/bench.json"; then ok "bench linux-x64"
    else fail "bench linux-x64" "$(tail -2 "$tmp/bench.err" | tr '\n' ' ')"; fi
  else
    fail "linux-x64 run" "this CPU has no AVX2/FMA: the x86-64-v3 binary cannot run here"
  fi
  # On a CPU below x86-64-v3 the binary must refuse to start with a message, not crash.
  # (An inner bash, so its "Aborted" job notice lands in the log, not on this script's output.)
  if bash -c '"$@"; exit $?' _ "$(command -v qemu-x86_64-static || echo false)" -cpu Nehalem "$x64" info -m "$model" > "$tmp/old.txt" 2>&1; then
    fail "x64 refuses old CPU" "ran on an emulated Nehalem (no AVX2)"
  elif grep -qi "instruction set" "$tmp/old.txt"; then ok "x64 refuses old CPU (qemu Nehalem): $(grep -i -m1 "instruction set" "$tmp/old.txt")"
  else fail "x64 refuses old CPU" "no instruction-set message: $(head -c 200 "$tmp/old.txt")"; fi
fi

# --- a device profile, built as users build one (devices/build.sh) ---------------------------
# The profile's list of specializations (device.props) must reach the source generator whole: MSBuild
# splits a command-line property at ',' and ';', and the compiler's .editorconfig drops what follows
# a ';'. Every name of the list is compiled in, stories260K (not in it) runs generic, and a model
# shaped like one of its later entries (smollm2-360m Q4_0, synthesized) runs specialized.
profile=x64-avx2
if [ "$build" -eq 1 ]; then
  t0=$SECONDS
  if "$repo/devices/build.sh" "$profile" -o "$art/$profile" > "$tmp/build-$profile.log" 2>&1; then ok "devices/build.sh $profile ($((SECONDS - t0)) s)"
  else fail "devices/build.sh $profile" "$(grep -E 'error|Error' "$tmp/build-$profile.log" | head -3 | tr '\n' ' ')"; fi
fi
pbin="$art/$profile/edgellm"
if [ -x "$pbin" ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  want=$(sed -n 's:.*<EdgeLlmSpecializedModel Include="\([^"]*\)" Quantizations="\([^"]*\)".*:\1 \2:p' "$repo/devices/$profile/device.props" |
    while read -r n q; do for t in ${q//;/ }; do echo "$n-${t,,}"; done; done | LC_ALL=C sort | paste -sd, - | sed 's/,/, /g')
  got=$("$pbin" info -m "$model" 2>&1 | sed -n 's/^specializations in this build: [0-9]* (\(.*\))$/\1/p')
  if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "info $profile: specializations ($want)"
  else fail "specializations $profile" "device.props lists '$want', the binary has '$got'"; fi
  if spec=$("$pbin" info -m "$model" 2>&1 | grep '^forward pass:') && [ "$spec" = "forward pass: generic" ]; then ok "info $profile stories260K: $spec"
  else fail "generic $profile" "stories260K is not in the profile: expected 'forward pass: generic', got '$spec'"; fi
  if "$pbin" synth --like smollm2-360m --type Q4_0 -o "$tmp/smollm2.gguf" > "$tmp/synth.log" 2>&1 &&
     spec=$("$pbin" info -m "$tmp/smollm2.gguf" 2>&1 | grep '^forward pass:') && [ "$spec" = "forward pass: specialized: smollm2-360m-q4_0" ]; then
    ok "info $profile synthesized smollm2-360m Q4_0: $spec"
  else fail "specialized $profile" "expected 'forward pass: specialized: smollm2-360m-q4_0', got '${spec:-}' $(tail -1 "$tmp/synth.log")"; fi
  rm -f "$tmp/smollm2.gguf"
elif [ -x "$pbin" ]; then ok "profile $profile built (this CPU has no AVX2/FMA to run it)"
else fail "binary $profile" "$pbin missing"; fi

# --- linux-arm64 under qemu ------------------------------------------------------------------
if publish linux-arm64 -r linux-arm64; then
  arm="$art/linux-arm64/edgellm"
  for cpu in "cortex-a76 neon-dotprod raspberry-pi-5" "cortex-a72 neon raspberry-pi-4"; do
    set -- $cpu
    story "linux-arm64 qemu $1 ($3)" qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$arm"
    kernel "linux-arm64 qemu $1 ($3)" "$2" qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$arm"
    kquant "linux-arm64 qemu $1 ($3)" qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$arm"
    mxfp4 "linux-arm64 qemu $1 ($3)" qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$arm"
    encoder "linux-arm64 qemu $1 ($3)" qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$arm"
  done
  # `edgellm selftest` (NEON kernels vs references) where the command exists.
  if qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm" --help 2>&1 | grep -qw selftest; then
    for cpu in cortex-a76 cortex-a72; do
      if qemu-aarch64-static -cpu $cpu -L /usr/aarch64-linux-gnu "$arm" selftest > "$tmp/self.txt" 2>&1; then ok "selftest qemu $cpu: $(tail -1 "$tmp/self.txt")"
      else fail "selftest qemu $cpu" "$(tail -3 "$tmp/self.txt" | tr '\n' ' ')"; fi
    done
  fi
fi
finish
