#!/usr/bin/env bash
# Install the peers of benchmarks/compare.py (pcx, jpc) and bench_spiking.py (spyx) into their own virtual
# environments (they pin their own JAX versions).
#
#   bash benchmarks/setup_peers.sh            # creates benchmarks/.venv/<peer> for each peer that installs
#
# Each comes from PyPI (``pip install <peer>``) and is skipped with a message when the registry has no such package.
# The benchmarks find the environments under benchmarks/.venv/<name>/bin/python.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.venv"  # ignored by git (.venv/)
py="${PYTHON:-python3}"
mkdir -p "$root"
for peer in pcx jpc spyx; do
  venv="$root/$peer"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import $peer" 2>/dev/null; then
    echo "$peer: already installed in $venv"; continue
  fi
  "$py" -m venv "$venv" || { echo "$peer: could not create a venv"; continue; }
  # the peers need only CPU JAX, optax, equinox and numpy; scikit-learn gives the same digits split as dynlearn
  if "$venv/bin/pip" install -q "$peer" scikit-learn 2>"$venv/pip.log"; then
    echo "$peer: installed ($("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$peer'), 'jax', m.version('jax'))"))"
  else
    echo "$peer: not installable from the registry (see $venv/pip.log); compare.py skips it"
    rm -rf "$venv"
  fi
done
