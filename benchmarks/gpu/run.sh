#!/usr/bin/env bash
# GPU readiness benchmark: one JSON summary on stdout (progress on stderr), <= 8 minutes on one H100/H200.
#   benchmarks/gpu/run.sh [--budget-s 450] [--out gpu.json] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec timeout 480 python benchmarks/gpu/run.py "$@"
