"""``dynlearn sweep``: the command and its help (a module of its own to keep the command line's modules small)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import _handled, app

SWEEP_HELP = """Run a sweep: a grid and/or list over the parameters of a check, a training run or a figure, times seeds.

Points are written to OUT one by one as they finish (a kill loses only the points running); running the same
command again computes only the missing points (and retries failed ones). The result is ONE xarray Dataset with a
dimension per swept parameter, in OUT/result.zarr; in Python: dynlearn.results.open_result(OUT).

\b
CONFIG.toml, by example:
  [run]
  kind = "check"              # check | train | figure
  name = "pc_feedforward"     # a registered check or figure (train: a learner), see `dynlearn list`
  quick = true                # start from the check's/figure's quick configuration
  seeds = [0, 1, 2, 3]        # dimension "seed"
  [params]                    # fixed for every point
  n_times = 11
  [grid]                      # outer product, one dimension per key
  t_end = [20.0, 40.0, 60.0]
  [zip]                       # optional: equal-length lists zipped along dimension "case"
  batch = [2, 4]
  sizes = [[5, 10, 3], [5, 20, 3]]
\b
kind = "train": parameters learner (grid value "*" = every registered learner but [run] exclude), data, hidden,
epochs, batch_size, lr, optimizer, train_fraction, prune (levels), prune_min_fraction, noise (sigmas), n_test.
Shipped: dynlearn sweep holistic_quick (the BP-vs-bio comparison of Gupta et al.; holistic_full at scale).
\b
Examples:
  dynlearn sweep my_sweep.toml --out sweeps/mine
  dynlearn sweep my_sweep.toml --executor processes --workers 4
  dynlearn sweep my_sweep.toml --scheduler tcp://10.0.0.1:8786      # a dask.distributed cluster
"""


@app.command("sweep", help=SWEEP_HELP)
@_handled
def sweep(
    config: Annotated[str, typer.Argument(help="a sweep TOML file, or the name of a shipped one (holistic_quick, holistic_full)")],
    out: Annotated[Optional[Path], typer.Option(help="store folder (default: sweeps/<config name>)")] = None,
    executor: Annotated[str, typer.Option(help="inprocess, processes (a local process pool) or dask (needs --scheduler)")] = "inprocess",
    scheduler: Annotated[Optional[str], typer.Option(help="dask.distributed scheduler address, e.g. tcp://host:8786 (implies --executor dask)")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="processes of --executor processes (default: CPU count)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar; only the summary line")] = False,
) -> None:
    from .sweep import run_sweep, shipped_config

    path = Path(config)
    if not path.exists() and not config.endswith(".toml"):
        path = shipped_config(config)
    out = out if out is not None else Path("sweeps") / path.stem
    summary = run_sweep(path, out, executor=executor, scheduler=scheduler, workers=workers, quiet=quiet)
    typer.echo(summary.line())
    if summary.failed:
        typer.echo(f"{summary.failed} point(s) failed; their errors are in {out}/failed/ and the result's `error` variable", err=True)
        raise typer.Exit(1)
