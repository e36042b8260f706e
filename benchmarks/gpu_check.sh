#!/usr/bin/env bash
# The checks that need a CUDA GPU in one command (about 8 minutes, for a borrowed machine):
# the GPU-only tests (CUDA-graph capture, eager and compiled, fused and multi-tensor Adam, online
# SAC), then `rlcore bench` of BENCH_AGENTS (default recoil, whose captured update had not run
# on a GPU) in eager and captured mode with 10 seeds. Logs go to $OUT when set, else runs/gpu/.
# Exit status: the tests'. On a GPU machine without rlcore's dependencies or a network: run
# benchmarks/gpu_wheels.sh where pip works, bring .whl/ along with the checkout, run this.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
out=$(realpath -m "${OUT:-runs/gpu}")
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# rlcore as installed (agents/, envs/, configs/ inside rlcore/), with its tests beside it, in a
# folder of its own: nothing to build, and the checkout's rlcore/ cannot shadow it.
src=/tmp/rlcore-src
rm -rf "$src" && mkdir -p "$src" && cp -r rlcore tests pyproject.toml "$src"/
for part in agents envs configs; do cp -r "$part" "$src/rlcore/$part"; done
cd "$src"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_compile.py tests/test_sac.py \
    -k "${TESTS:-cuda or captured or cudagraphs_mode}" 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
for agent in ${BENCH_AGENTS:-recoil}; do
  python3 -m rlcore.cli bench agent="$agent" device="${DEVICE:-cuda}" \
      "bench.modes=${BENCH_MODES:-[eager,cudagraphs]}" bench.seeds=10 \
      bench.updates="${BENCH_UPDATES:-1000}" bench.warmup=60 bench.out="$out/bench-$agent.json" \
      2>&1 | tee "$out/bench-$agent.log"
done
exit "$tests"
