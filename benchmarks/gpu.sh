#!/usr/bin/env bash
# Every figure that needs a GPU, in one prepared run (under 8 minutes on one H100/H200), into one
# JSON file:
#
#   eap_ig    EAP-IG on a random Qwen2.5-1.5B-shaped model (bf16), 2 examples x 300 tokens x
#             m = 100 steps: seconds per example, time / bare forward+backward over the same rows,
#             fused vs unfused, peak memory of each (benchmarks/eap_ig.py).
#   generate  the same eval (64 GSM8K prompts, 256 new tokens, temperature 0.6) through the
#             transformers backend and through vLLM, intact and with a head ablation: tokens/s,
#             vLLM / transformers, vLLM intervened / intact (goal within 3%), and the greedy
#             canary: agreement intact, with the real edit, and with a no-op edit (which must be
#             caught) (benchmarks/generate.py --canary).
#
# Each part runs under its own time limit; a part that fails or runs out of time is recorded
# with its exit code and the tail of its log, and the other part still runs.
#
#   benchmarks/gpu.sh [--out FILE]      # on a GPU machine (vLLM: pip install "sparkql[vllm]")
#   benchmarks/gpu.sh --smoke           # the same script on tiny shapes on a CPU: proves it runs
#
# Python: $PYTHON, else .venv-vllm/bin/python (has vLLM), else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "${PYTHON:-}" ]; then
  for p in .venv-vllm/bin/python .venv/bin/python python3; do
    if command -v "$p" >/dev/null 2>&1; then PYTHON="$p"; break; fi
  done
fi
if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-gpu-smoke.json}
  EAP=(--size 2x64 --tokens 24 --steps 4 --examples 2 --device cpu --repeats 1 --unfused yes)
  GEN=(--layers 2 --hidden 64 --problems 4 --tokens 16 --repeats 1 --device cpu --single no --canary)
  T_EAP=300; T_GEN=600
else
  OUT=${OUT:-gpu-figures.json}
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PYTHON: run on a GPU machine, or use --smoke" >&2
    exit 2
  fi
  EAP=(--size 1.5b --tokens 300 --steps 100 --examples 2 --device cuda --repeats 2 --unfused yes)
  GEN=(--size 1.5b --problems 64 --tokens 256 --repeats 2 --device cuda --canary)
  T_EAP=210; T_GEN=260
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t_start=$(date +%s)
part() {  # name, limit, script, args...
  local name=$1 limit=$2 script=$3
  shift 3
  local t0
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $PYTHON $script $*" >&2
  timeout --signal=TERM --kill-after=20 "$limit" "$PYTHON" "$script" "$@" --json "$tmp/$name.json" >"$tmp/$name.log" 2>&1
  echo $? >"$tmp/$name.rc"
  echo $(( $(date +%s) - t0 )) >"$tmp/$name.s"
  tail -n 15 "$tmp/$name.log" >&2
}
part eap_ig "$T_EAP" benchmarks/eap_ig.py "${EAP[@]}"
part generate "$T_GEN" benchmarks/generate.py "${GEN[@]}"

"$PYTHON" - "$tmp" "$OUT" "$SMOKE" "$(( $(date +%s) - t_start ))" <<'PY'
import json, platform, sys
from pathlib import Path

tmp, out, smoke, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
doc = {"script": "benchmarks/gpu.sh", "mode": "smoke (tiny shapes on a CPU: the figures mean nothing)" if smoke else "gpu",
       "seconds": seconds, "python": platform.python_version(), "parts": {}}
try:
    import torch
    doc["torch"] = torch.__version__
    doc["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
except Exception as e:  # noqa: BLE001
    doc["torch"] = f"unavailable: {e}"
try:
    import vllm
    doc["vllm"] = vllm.__version__
except Exception:  # noqa: BLE001
    doc["vllm"] = None
for name in ("eap_ig", "generate"):
    rc = int((tmp / f"{name}.rc").read_text())
    part = {"exit_code": rc, "seconds": int((tmp / f"{name}.s").read_text())}
    if rc == 124 or rc == 137:
        part["status"] = "timed out"
    f = tmp / f"{name}.json"
    if rc == 0 and f.is_file():
        part["figures"] = json.loads(f.read_text())
    else:
        part["log_tail"] = (tmp / f"{name}.log").read_text().splitlines()[-30:]
    doc["parts"][name] = part
out.write_text(json.dumps(doc, indent=2) + "\n")
ok = all(p["exit_code"] == 0 for p in doc["parts"].values())
print(f"wrote {out} ({seconds} s): " + ", ".join(f"{k} {'ok' if p['exit_code'] == 0 else 'FAILED'}" for k, p in doc["parts"].items()))
sys.exit(0 if ok else 1)
PY
