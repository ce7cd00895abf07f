#!/usr/bin/env bash
# MedStudio GPU bench (issue 17): set up a CUDA venv, then run bench/gpu/bench_gpu.py.
#
#   bash bench/gpu/run.sh [--dry-run] [--out DIR]
#
# GPU run: creates bench/gpu/.venv, installs vllm (which brings the CUDA torch it pins), deepspeed
# and this project (--no-deps + its pure dependencies, torch constrained to the installed build),
# prints versions and nvidia-smi, then measures parts a-e within BENCH_BUDGET_S seconds of the
# script's start (default 530: under 9 minutes, installs included).
# --dry-run: no installs; the project's own venv (.venv), CPU, the tiny test model, tiny counts.
#
# Environment: MEDSTUDIO_SHARED_DATA (the shared data; else bench/gpu/data, else /work/shared/data),
# BENCH_BUDGET_S, BENCH_VENV, BENCH_BASE_PYTHON, BENCH_VLLM_SPEC (e.g. "vllm==0.11.0"),
# BENCH_WHEELS (a folder of wheels pip may use: --find-links), BENCH_PYTHON (dry run's python).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
T0=$(date +%s)
DRY=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (use --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$HERE/out}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)" || { echo "run.sh: cannot create $OUT" >&2; exit 2; }

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_HUB_DISABLE_TELEMETRY=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

say() { echo "[run.sh $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

setup_gpu_env() {
  local base="${BENCH_BASE_PYTHON:-$(command -v python3.12 || command -v python3.11 || command -v python3)}"
  local venv="${BENCH_VENV:-$HERE/.venv}"
  local wheels="${BENCH_WHEELS:-$HERE/wheels}"
  local pipx=(--progress-bar off)
  [ -d "$wheels" ] && pipx+=(--find-links "$wheels")
  PY="$venv/bin/python"
  if [ -x "$PY" ] && [ -f "$venv/.bench-installed" ] && "$PY" -c "import vllm, deepspeed, medstudio, torch; assert torch.cuda.is_available()" 2>/dev/null; then
    say "reusing $venv (installed earlier)"
    return 0
  fi
  say "base python: $base ($("$base" --version 2>&1))"
  if ! timeout 60 "$base" -m pip index versions vllm --retries 0 --timeout 10 >/dev/null 2>&1 \
     && ! timeout 60 "$base" -m pip download --no-deps -q --retries 0 --timeout 10 -d "$(mktemp -d)" six >/dev/null 2>&1; then
    say "WARNING: no package index reachable: running with $base as it is (parts whose packages are missing are skipped)"
    PY="$base"
    if [ -d "$wheels" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
      say "installing the carried wheels from $wheels into $HERE/.site"
      "$base" -m pip install -q --no-index --no-deps --target "$HERE/.site" "$wheels"/*.whl || say "WARNING: wheel install failed"
      export PYTHONPATH="$PYTHONPATH:$HERE/.site"
    fi
    return 0
  fi
  [ -x "$PY" ] || "$base" -m venv "$venv" || { say "ERROR: cannot create $venv"; return 1; }
  "$PY" -m pip install -q "${pipx[@]}" --upgrade pip setuptools wheel || return 1
  # 1. vllm, with the CUDA torch build it pins (PyPI's Linux torch wheels are CUDA builds).
  say "pip install ${BENCH_VLLM_SPEC:-vllm} (brings its pinned torch)"
  "$PY" -m pip install -q "${pipx[@]}" "${BENCH_VLLM_SPEC:-vllm}" || { say "ERROR: vllm install failed"; return 1; }
  local torch_v
  torch_v="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')" || return 1
  echo "torch==$torch_v" >"$venv/constraints.txt"
  say "torch $torch_v pinned for everything after it ($venv/constraints.txt)"
  # 2. deepspeed, built against that torch (no CUDA ops compiled now: they JIT-build if ever used).
  say "pip install deepspeed"
  "$PY" -m pip install -q "${pipx[@]}" -c "$venv/constraints.txt" py-cpuinfo ninja packaging psutil numpy || true
  DS_BUILD_OPS=0 "$PY" -m pip install -q "${pipx[@]}" -c "$venv/constraints.txt" --no-build-isolation deepspeed \
    || DS_BUILD_OPS=0 "$PY" -m pip install -q "${pipx[@]}" -c "$venv/constraints.txt" deepspeed \
    || say "WARNING: deepspeed install failed (part c will be skipped)"
  # 3. this project: its dependencies minus torch (constrained), then the package with --no-deps, so
  #    pip never swaps the CUDA torch for pyproject's CPU pin. Python 3.12 on the device: the project
  #    says <3.12, hence --ignore-requires-python.
  "$PY" - "$ROOT/pyproject.toml" >"$venv/project-deps.txt" <<'EOF' || return 1
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() != "torch"))
EOF
  say "pip install the project's dependencies ($(wc -l <"$venv/project-deps.txt") lines, torch excluded)"
  local ok=1
  if ! "$PY" -m pip install -q "${pipx[@]}" -c "$venv/constraints.txt" -r "$venv/project-deps.txt"; then
    say "WARNING: installing the dependencies together failed; one at a time, skipping those that fail"
    while read -r dep; do
      [ -n "$dep" ] || continue
      "$PY" -m pip install -q "${pipx[@]}" -c "$venv/constraints.txt" "$dep" || { say "WARNING: could not install $dep"; ok=0; }
    done <"$venv/project-deps.txt"
  fi
  # PYTHONPATH has the repository anyway; the editable install is for metadata (versions) and parity.
  "$PY" -m pip install -q "${pipx[@]}" --no-deps --ignore-requires-python -e "$ROOT" || { say "WARNING: pip install -e . failed"; ok=0; }
  "$PY" -c 'import torch, sys; v = torch.version.cuda; print("torch", torch.__version__, "CUDA", v); sys.exit(0 if v else 1)' \
    || { say "ERROR: torch in $venv is not a CUDA build"; return 1; }
  if [ "$ok" = 1 ]; then touch "$venv/.bench-installed"; fi
}

if [ "$DRY" = 1 ]; then
  PY="${BENCH_PYTHON:-}"
  [ -n "$PY" ] || { [ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python"; } || PY="$(command -v python3)"
  say "dry run: no installs; python $PY"
else
  say "GPU run; budget ${BENCH_BUDGET_S:-530} s from now; setup log: $OUT/setup.log"
  setup_gpu_env 2>&1 | tee "$OUT/setup.log"
  rc=${PIPESTATUS[0]}
  # PY was set inside the pipeline's subshell: decide again here. The bench venv is used whenever
  # its torch is a CUDA build, even if some package failed (the parts needing it say so).
  venv="${BENCH_VENV:-$HERE/.venv}"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
    PY="$venv/bin/python"
    [ "$rc" = 0 ] || say "WARNING: setup reported rc $rc; using $venv anyway (see $OUT/setup.log)"
  else
    PY="${BENCH_BASE_PYTHON:-$(command -v python3.12 || command -v python3.11 || command -v python3)}"
    [ "$rc" = 0 ] || say "WARNING: setup failed (rc $rc); measuring what $PY can (see $OUT/setup.log)"
    [ -d "$HERE/.site" ] && export PYTHONPATH="$PYTHONPATH:$HERE/.site"
  fi
fi

say "versions:"
"$PY" - <<'EOF'
from importlib import metadata
import sys
print(f"  python {sys.version.split()[0]} ({sys.executable})")
for p in ("torch", "vllm", "deepspeed", "transformers", "trl", "accelerate", "tokenizers", "datasets", "django", "medstudio"):
    try:
        print(f"  {p} {metadata.version(p)}")
    except metadata.PackageNotFoundError:
        print(f"  {p} (not installed)")
try:
    import torch
    print(f"  torch CUDA {torch.version.cuda}; cuda available: {torch.cuda.is_available()}"
          + (f"; device {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
except Exception as exc:
    print(f"  torch import failed: {exc}")
EOF
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi || true; else say "nvidia-smi: not found (no NVIDIA GPU here)"; fi

ARGS=(--out "$OUT")
if [ "$DRY" = 1 ]; then ARGS+=(--dry-run); else ARGS+=(--deadline "$(( T0 + ${BENCH_BUDGET_S:-530} ))"); fi
say "bench_gpu.py ${ARGS[*]}"
"$PY" "$HERE/bench_gpu.py" "${ARGS[@]}"
rc=$?
say "done (rc $rc): $OUT/gpu_bench.json, $OUT/gpu_bench.md"
exit $rc
