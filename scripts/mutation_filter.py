"""Trim a cosmic-ray session before it runs (called by ``scripts/mutation.sh`` with the session database).

* Mutants inside type annotations are dropped: every dynlearn module has ``from __future__ import annotations``, so an
  annotation is never evaluated and such a mutant (``X | None`` -> ``X & None``, ...) is equivalent by construction.
* ``--sample N`` keeps a uniformly random ``N`` of the rest (``--seed``): the score of a sample of ``n`` estimates
  the whole with a standard error of ``sqrt(p (1 - p) / n)``.
"""

from __future__ import annotations

import argparse
import ast
import random
import sqlite3


def annotation_spans(path: str) -> list[tuple[int, int, int, int]]:
    """``(first row, first col, last row, last col)`` of every annotation in a module (rows 1-based, as cosmic-ray's)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            nodes += [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None and x.annotation]
            nodes += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) for n in nodes]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="the cosmic-ray session database (after `cosmic-ray init`)")
    p.add_argument("--sample", type=int, default=0, help="run a random sample of this many mutants (0: all)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    db = sqlite3.connect(a.session)
    rows = db.execute("select job_id, module_path, start_pos_row, start_pos_col from mutation_specs").fetchall()
    spans = {m: annotation_spans(m) for m in {r[1] for r in rows}}

    def in_annotation(module, row, col):
        return any((a0, b0) <= (row, col) < (a1, b1) for a0, b0, a1, b1 in spans[module])

    keep = [j for j, m, r, c in rows if not in_annotation(m, r, c)]
    n_annotations = len(rows) - len(keep)
    if 0 < a.sample < len(keep):
        random.Random(a.seed).shuffle(keep)
        keep = keep[: a.sample]
    kept = set(keep)
    for j, *_ in rows:
        if j not in kept:
            db.execute("delete from mutation_specs where job_id = ?", (j,))
            db.execute("delete from work_items where job_id = ?", (j,))
    db.commit()
    sample = f", a random sample of {len(keep)} of them (seed {a.seed})" if a.sample else ""
    print(f"{len(rows)} mutants: {n_annotations} inside annotations dropped (equivalent), {len(rows) - n_annotations} left{sample}")


if __name__ == "__main__":
    main()
