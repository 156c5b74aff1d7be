#!/usr/bin/env bash
# Create .venv with dynlearn and its test extra; install Fashion-MNIST's IDX files where apt can.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,docs]"
# optional real 28x28 benchmark data (Debian package); skipped cleanly where apt is unavailable
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "note: dataset-fashion-mnist not installed; Fashion-MNIST runs will be skipped"
fi
