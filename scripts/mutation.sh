#!/usr/bin/env bash
# Mutation testing with cosmic-ray, in a throw-away copy of the working tree (the checkout is never mutated).
#
#   scripts/mutation.sh [MODULE ...]          # default: dynlearn/analysis/gradients.py
#   TESTS="tests/test_mutants.py tests/test_pc.py" scripts/mutation.sh dynlearn/dynamics.py
#
# Every mutant of MODULE (cosmic-ray's operators: comparison, arithmetic, boolean, number, ... replacements) is
# applied in the copy, the fast test subset TESTS (default tests/test_mutants.py) is run with -x, and the mutant
# is "killed" when a test fails. Prints total / killed / survived and the survivors (the ones that no test kills);
# a survivor is either a missing test or an equivalent mutant (same behaviour: list it with the reason in the
# README's "Mutation testing" section). Not part of the default test run: it runs the subset once per mutant.
# Mutants inside type annotations are dropped first (never evaluated: equivalent), and SAMPLE=N runs a random N of
# the rest (scripts/mutation_filter.py).
# Environment: TESTS, TIMEOUT (seconds per mutant, default 300), SAMPLE, SAMPLE_SEED (default 0), KEEP=1 keeps the
# copy and its session database.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
"$py" -c "import cosmic_ray" 2>/dev/null || { echo "mutation.sh: cosmic-ray is not installed; pip install -e '.[mutation]'" >&2; exit 2; }
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(dynlearn/analysis/gradients.py)
tests="${TESTS:-tests/test_mutants.py}"
timeout="${TIMEOUT:-300}"

work="$(mktemp -d "${TMPDIR:-/tmp}/dynlearn-mutation.XXXXXX")"
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
# tracked and untracked-but-not-ignored files: what the tests see in the checkout, without caches or the venv
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$work" 2>/dev/null) || true

export XLA_FLAGS="${XLA_FLAGS:---xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1}" MPLBACKEND=Agg
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"  # the copy's dynlearn, ahead of the editable install
where="$(cd "$work" && "$py" -c 'import dynlearn, os; print(os.path.dirname(dynlearn.__file__))')"
[ "$where" = "$work/dynlearn" ] || { echo "mutation.sh: dynlearn imports from $where, not the copy" >&2; exit 2; }

paths=""
for m in "${modules[@]}"; do paths="$paths\"$m\", "; done
cat > "$work/cosmic-ray.toml" <<EOF
[cosmic-ray]
module-path = [${paths%, }]
timeout = $timeout
excluded-modules = []
test-command = "$py -m pytest -x -q -p no:cacheprovider -p no:randomly $tests"

[cosmic-ray.distributor]
name = "local"
EOF

cd "$work"
echo "mutation testing ${modules[*]} against $tests (copy in $work)"
"$py" -m pytest -x -q -p no:cacheprovider $tests >"$work/precheck.log" 2>&1 || {
    echo "mutation.sh: the test subset fails on the unmutated code; the end of its output:" >&2; tail -n 40 "$work/precheck.log" >&2; exit 2; }
"$py" -m cosmic_ray.cli init cosmic-ray.toml session.sqlite
"$py" scripts/mutation_filter.py session.sqlite --sample "${SAMPLE:-0}" --seed "${SAMPLE_SEED:-0}"
"$py" -m cosmic_ray.cli exec cosmic-ray.toml session.sqlite
"$py" - <<'EOF'
import json, subprocess, sys
dump = subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "dump", "session.sqlite"], capture_output=True, text=True, check=True)
rows = [json.loads(line) for line in dump.stdout.splitlines() if line.strip()]
done = [(job, res) for job, res in rows if res is not None]
killed = [r for r in done if r[1]["test_outcome"] == "killed"]
survived = [r for r in done if r[1]["test_outcome"] == "survived"]
other = len(done) - len(killed) - len(survived)
print(f"\nmutants: {len(rows)} total, {len(done)} run, {len(killed)} killed, {len(survived)} survived, {other} incompetent")
for job, res in survived:
    for m in job["mutations"]:
        print(f"  survived: {m['module_path']}:{m['start_pos'][0]} {m['operator_name']} #{m['occurrence']}")
if done:
    print(f"mutation score: {100.0 * len(killed) / max(len(killed) + len(survived), 1):.1f}% "
          "(killed / (killed + survived); subtract the equivalent survivors listed in the README)")
EOF
