#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine that has torch but no network:
#   1. installs the carried wheels (.whl/: gymnasium, farama-notifications, stable-baselines3,
#      mnist1d, fetched beforehand with `pip download --no-deps --only-binary=:all:
#      --python-version 3.12 ... -d .whl`) and this package into /tmp/site;
#   2. runs the tests marked gpu;
#   3. runs the population's GPU throughput benchmark (N=256 against one single env, issue 16).
# Logs and JSON go to $OUT (or ./gpu-out). Runs from /tmp so that the installed package, not the
# source folder (whose agents/ is mapped to arbiter_env.agents only by an install), is imported.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
    --target /tmp/site \
    "$repo"/.whl/*.whl "$repo" 2>&1 | grep -v "^WARNING" | tail -5
export PYTHONPATH=/tmp/site
cd /tmp || exit 1
python3 -c "import arbiter_env.agents, torch; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee "$out/gpu.txt" || exit 1
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider --rootdir "$repo" \
    -c "$repo/pyproject.toml" -m gpu "$repo/tests/test_cuda.py" "$repo/tests/training/test_trainer.py" \
    2>&1 | tee "$out/gpu-tests.log"
timeout "${BENCH_TIMEOUT:-300}" python3 "$repo/benchmarks/population_throughput.py" --device cuda \
    --n-envs 256 --baseline single --steps "${STEPS:-20}" --repeats "${REPEATS:-2}" \
    --json "$out/population-cuda.json" 2>&1 | tee "$out/population-cuda.log"
