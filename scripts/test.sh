#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite: two single-threaded workers, slow sweeps excluded.
# pytest's exit code 5 (no tests collected) is a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export MPLBACKEND=Agg
set +e
.venv/bin/python -m pytest -n 2 --dist loadfile --timeout 900 -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
