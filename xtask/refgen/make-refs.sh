#!/usr/bin/env bash
# llama.cpp's reference outputs on the transplanted test models (crates/realizar-runtime/tests/
# real_models/transplant.rs), written to crates/realizar-runtime/tests/refs/transplant/<kind>.json.
# Builds llama.cpp with ../shared/tools/llamacpp-peer (the commit ../shared/refs was made with),
# links refgen.cpp against it, regenerates the transplanted files through the tests, then runs
# refgen (prompts, greedy, teacher forcing) and llama-perplexity (ppl_bridges.txt, ctx 128,
# flash attention off) on each. Run it by hand when the generator or the prompts change; CI
# only reads the committed JSON. Usage: xtask/refgen/make-refs.sh [KIND...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${REALIZAR_SHARED:-$ROOT/../shared}
OUT=$ROOT/crates/realizar-runtime/tests/refs/transplant
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(qwen2 qwen3 llama3 smollm3 phi3 phi3-long llama-spm mistral3
  iq4_xs iq4_nl gemma3-iq4_xs gemma3-iq4_nl mxfp4 gemma3-mxfp4 q4_0 q5_0 q5_1 q8_0 q2_k q3_k f16 bf16
  gemma3-q8_0 gemma3-q5_1 gemma3-f16 gemma3-bf16 tq1_0 tq2_0 gemma3-tq1_0 iq3_xxs iq3_s iq2_xxs iq2_xs iq2_s iq1_s iq1_m q2_k-down gemma3-q2_k-down)
[ "${KINDS[0]}" != "none" ] || KINDS=()

BIN=$(bash "$SHARED/tools/llamacpp-peer")
BUILD=$(dirname "$BIN")
SRC=$BUILD/../src/vendor/llama.cpp
cmake --build "$BUILD" -j "$(nproc)" --target llama llama-quantize >&2
REFGEN=$BUILD/refgen
if [ ! -x "$REFGEN" ] || [ "$ROOT/xtask/refgen/refgen.cpp" -nt "$REFGEN" ]; then
  g++ -O2 -std=c++17 -fopenmp "$ROOT/xtask/refgen/refgen.cpp" -I"$SRC/include" -I"$SRC/ggml/include" \
    -Wl,--start-group $(find "$BUILD/src" "$BUILD/ggml" -name 'lib*.a') -Wl,--end-group \
    -lpthread -ldl -o "$REFGEN"
fi

# Requantized kinds (transplant.rs REQUANTS): llama-quantize makes the file through F16; its
# tensor types become <kind>.plan, which the test generator follows with realizar's own
# quantizers; below, every tensor of the generator's file must equal llama-quantize's.
export PYTHONPATH=$SRC/gguf-py
TMPQ=$(mktemp -d)
trap 'rm -rf "$TMPQ"' EXIT
requant_src() { case $1 in gemma3-*) ls "$ROOT"/models/gemma3-270m/*.gguf ;; *) ls "$ROOT"/models/smollm2-135m/*.gguf ;; esac; }
requant_type() { echo "${1#gemma3-}" | tr a-z A-Z; }
# MXFP4 has only a MoE file type (experts MXFP4, the rest Q8_0): every matrix is named.
requant_args() {
  case ${1#gemma3-} in
    mxfp4) for t in attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down; do
             printf -- '--tensor-type %s=mxfp4 ' "$t"; done; echo MXFP4_MOE ;;
    # The types that need an importance matrix in llama-quantize take the IQ3_XXS mix, with
    # ffn_down renamed below.
    iq2_*|iq1_*) echo IQ3_XXS ;;
    # llama-quantize's Q2_K mix puts no SmolLM2 or Gemma3 matrix in Q2_K (their rows of 576
    # and 640 elements are not whole blocks, and ffn_down goes to Q3_K): name ffn_down.
    q2_k-down) echo "--tensor-type ffn_down=q2_k Q2_K" ;;
    *) requant_type "$1" ;;
  esac
}
for kind in ${KINDS[@]+"${KINDS[@]}"}; do
  case $kind in iq[0-9]_*|mxfp4|q[0-9]_*|tq[12]_0|f16|bf16|gemma3-*) ;; *) continue ;; esac
  src=$(requant_src "$kind")
  "$BIN/llama-quantize" --allow-requantize "$src" "$TMPQ/$kind-f16.gguf" F16 2 >/dev/null 2>&1
  # shellcheck disable=SC2046
  "$BIN/llama-quantize" $(requant_args "$kind" | sed 's/ [A-Z0-9_]*$//;/^[A-Z0-9_]*$/d') \
    "$TMPQ/$kind-f16.gguf" "$TMPQ/$kind.gguf" "$(requant_args "$kind" | awk '{print $NF}')" 2 >/dev/null 2>&1
  python3 - "$TMPQ/$kind.gguf" "$kind" > "$OUT/$kind.plan" <<'PY'
import gguf, sys
for t in gguf.GGUFReader(sys.argv[1]).tensors:
    ty = t.tensor_type.name
    # llama-quantize's IQ3_XXS / IQ3_S mixes keep every SmolLM2 matrix out of the type
    # (ffn_down, the only one whose rows are whole 256-element blocks, goes to a K-quant)
    # and naming it needs an importance matrix: the plan names ffn_down in the type, which
    # the generator writes with realizar's plain encoder.
    if sys.argv[2] in ("iq3_xxs", "iq3_s", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m") \
            and ".ffn_down." in t.name:
        ty = sys.argv[2].upper()
    print(t.name, ty)
PY
done

# The tests write the files (deterministically) under target/transplant.
(cd "$ROOT" && cargo test --release -p realizar-runtime --test real_models \
  transplant::transplants_are_deterministic -- --exact >&2)

# Pre-tokenizers: SmolLM2's vocabulary relabelled with each `tokenizer.ggml.pre` value the
# tokenizer knows, tokenized by llama.cpp (vocab-only load) -> pretok.json.
python3 - "$OUT/pretok.json" <<'PY'
import json, sys
json.dump({}, open(sys.argv[1], "w"))
PY
for file in "$ROOT"/target/transplant/vocab-*-v*.gguf; do
  pre=$(basename "$file" | sed 's/^vocab-\(.*\)-v[0-9]*\.gguf$/\1/')
  "$REFGEN" --tokenize "$file" "$OUT/pretok_lines.txt" > "$OUT/pretok.tmp.json"
  python3 - "$OUT/pretok.json" "$OUT/pretok.tmp.json" "$pre" <<'PY'
import json, sys
allp, one, pre = sys.argv[1:]
d = json.load(open(allp))
d[pre] = json.load(open(one))
json.dump(d, open(allp, "w"), separators=(",", ":"), sort_keys=True)
PY
done
rm -f "$OUT/pretok.tmp.json"

# Chats as llama-server answers them with a built-in template (greedy, up to EOG).
for pair in qwen2:chatml llama-spm:llama2 phi3:phi3 llama3:llama3 mistral3:mistral-v7-tekken; do
  kind=${pair%%:*}; tmpl=${pair#*:}
  file=$(ls "$ROOT"/target/transplant/smollm2-"$kind"-v*.gguf | sort -V | tail -1)
  [ -f "$file" ] || continue
  "$REFGEN" --chat-run "$file" "$tmpl" "$OUT/chat_conv.txt" 48 > "$OUT/chat_$kind.json"
done

for kind in ${KINDS[@]+"${KINDS[@]}"}; do
  file=$(ls "$ROOT"/target/transplant/smollm2-"$kind"-v*.gguf | sort -V | tail -1)
  echo "== $kind: $file" >&2
  if [ -f "$TMPQ/$kind.gguf" ]; then
    python3 - "$TMPQ/$kind.gguf" "$file" <<'PY'
import gguf, sys
ours = {t.name: t for t in gguf.GGUFReader(sys.argv[2]).tensors}
# Types whose ggml quantizer realizar does not implement get its plain encoder
# (realizar_quant::quantize_row_plain): the same type, other bytes.
PLAIN = {"IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M"}
for t in gguf.GGUFReader(sys.argv[1]).tensors:
    u = ours[t.name]
    if u.tensor_type.name in PLAIN:
        continue
    if t.tensor_type != u.tensor_type or t.data.tobytes() != u.data.tobytes():
        sys.exit(f"{t.name}: the generator's tensor differs from llama-quantize's")
PY
  fi
  "$REFGEN" "$file" "$OUT/prompts.txt" 32 1024 > "$OUT/$kind.tmp.json"
  ppl=$("$BIN/llama-perplexity" -m "$file" -f "$SHARED/refs/llamacpp/ppl_bridges.txt" -c 128 -b 128 -t 2 -fa off 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  [ -n "$ppl" ] || { echo "no perplexity for $kind" >&2; exit 1; }
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  python3 - "$OUT/$kind.tmp.json" "$OUT/$kind.json" "$ppl" "$sha" "$(basename "$file")" <<'PY'
import json, sys
src, dst, ppl, sha, name = sys.argv[1:]
d = json.load(open(src))
d["model"] = name
d["sha256"] = sha
d["perplexity"] = float(ppl)
d["how"] = ("xtask/refgen/make-refs.sh: llama.cpp 0c1e570 (llama-cpp-python 0.3.36), CPU, 2 threads, "
            "n_ctx 1024, batches of 512, flash attention off, f16 KV; greedy = argmax, lowest id on ties; "
            "perplexity: llama-perplexity -c 128 -b 128 -fa off on ../shared/refs/llamacpp/ppl_bridges.txt")
json.dump(d, open(dst, "w"), indent=1)
PY
  rm "$OUT/$kind.tmp.json"
done
