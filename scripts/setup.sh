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
# optional Debian packages, skipped cleanly where apt is unavailable: real 28x28 benchmark data, and a headless
# browser for the documentation site's rendering test
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    want=()
    [ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
    { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || want+=(chromium chromium-driver)
    if [ ${#want[@]} -gt 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}") >/dev/null 2>&1 \
            || echo "note: could not install ${want[*]}; Fashion-MNIST runs and the browser test will be skipped"
    fi
fi
