#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.py carries to a GPU machine without a network
# (that machine has torch, transformers, peft and accelerate, but not bitsandbytes; Python 3.12, x86_64):
# bitsandbytes (~43 MB), and liger-kernel (pure Python, ~1 MB; its triton comes with the machine's CUDA torch,
# so it is fetched and installed with --no-deps). They land in .whl/, which git ignores; gpu_check.py installs
# them into a private --target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d .whl bitsandbytes==0.50.2
python3 -m pip download --no-deps --only-binary=:all: -d .whl liger-kernel==0.8.5  # lorakit[gpu]
ls -l .whl
