#!/usr/bin/env bash
# Every GPU speed figure in one run (see gpu_check.py): from any folder, with the project's environment.
#   experiments/benchmarks/gpu_check.sh [--json FILE] [--dry] [--parts nmf interpret posthoc cnn14 loading]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$root/experiments/benchmarks/gpu_check.py" "$@"
