#!/usr/bin/env bash
# Run where pip reaches PyPI, before moving to a GPU machine without network: puts into .whl/ (git-ignored)
# the wheels of rlcore's dependencies that the GPU machine's image lacks; its python3 has
# torch, numpy, h5py, matplotlib, tqdm, pytest, pyyaml, cloudpickle, etils, absl-py, imageio
# and pillow (a dry run in a venv of just those, on the CPU, passed on 2026-12-01).
# Then carry .whl and run benchmarks/gpu_check.sh there. Argument: its Python (default 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl tensordict==0.15.3 pyvers==0.2.3 hydra-core==1.3.8 omegaconf==2.3.1 gymnasium==1.4.0 \
    farama-notifications==0.0.6 glfw==2.11.0 pyopengl==3.1.10 mujoco==3.3.0
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3   # an sdist, pure Python
du -sh .whl
