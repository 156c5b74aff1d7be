"""The ``dynlearn`` command: train models, check theorems, regenerate figures."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = """\
dynlearn: learning without backpropagation as differentiable dynamical systems.

Every model (predictive coding, equilibrium propagation, feedback-learning rules, dendritic
microcircuits) is an energy or a vector field integrated with diffrax; dynlearn trains them and checks,
numerically and in float64, the theorems the field rests on.

\b
Start here:
  dynlearn check --quick                       # every theorem check, quick configs, a pass/fail table
  dynlearn check pc_bp_limit --json r.json     # one check at paper scale, figures in JSON
  dynlearn figs --quick --out figures          # every figure as PNG + netCDF data
  dynlearn train --model pc --data digits      # predictive coding on scikit-learn's digits, vs backprop
  dynlearn list                                # models, rules, checks and figures known to this version
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _console():
    from rich.console import Console

    # a pipe or a log file gets a wide table instead of rich's 80-column default
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _fmt(value: float) -> str:
    return f"{value:.10g}" if 0.999 < abs(value) < 1 else f"{value:.6g}"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_all() -> None:
    """List the models/rules, theorem checks and figures this version knows."""
    from .figures import figure_specs
    from .rules import get_learner, learner_names
    from .theorems import checks

    con = _console()
    con.print("[bold]models and rules[/bold] (dynlearn train --model NAME, or --rule NAME)")
    for name in learner_names():
        con.print(f"  {name:<14} {get_learner(name).description}")
    con.print("\n[bold]theorem checks[/bold] (dynlearn check NAME)")
    for c in checks().values():
        con.print(f"  {c.name:<30} {c.statement}")
    con.print("\n[bold]figures[/bold] (dynlearn figs NAME)")
    for f in figure_specs().values():
        con.print(f"  {f.name:<30} {f.description}")


def _parse_hidden(hidden: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in hidden.split(",") if h.strip())
    except ValueError:
        _fail(f"--hidden must be comma-separated layer widths such as 128,128, got {hidden!r}")
    if any(s <= 0 for s in sizes):
        _fail(f"--hidden widths must be positive, got {hidden!r}")
    return sizes


def _learner_name(model: str | None, rule: str | None) -> str:
    """``--model M --rule R`` names the learner ``M/R`` (``pc/clamped``, ``ep/one_sided``); either alone names itself."""
    if model and rule:
        return rule if model == rule else f"{model}/{rule}"
    return model or rule


@app.command()
def train(
    model: Annotated[Optional[str], typer.Option(help="model: pc, bp, ep, pal, microcircuit, ... (see `dynlearn list`)")] = None,
    rule: Annotated[Optional[str], typer.Option(help="learning rule: a rule of --model (ep: one_sided|symmetric|holomorphic), or alone a feedforward rule (bp, fa, dfa, kp, wm, usf, brsf, frsf)")] = None,
    data: Annotated[str, typer.Option(help="digits (built in), fashion_mnist (Debian package dataset-fashion-mnist) or teacher_student")] = "digits",
    hidden: Annotated[str, typer.Option(help="hidden layer widths, comma-separated")] = "128,128",
    epochs: Annotated[int, typer.Option(min=1, help="passes over the training set")] = 20,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per update")] = 64,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (default: the learner's own, see `dynlearn list`)")] = None,
    optimizer: Annotated[str, typer.Option(help="adam, adamw, sgd, momentum or rmsprop (in Python, train() takes any optax optimiser)")] = "adam",
    seed: Annotated[int, typer.Option(help="seed for initialisation and batch order")] = 0,
    compare_bp: Annotated[bool, typer.Option(help="also train backprop on the same network and data, and report both")] = True,
    out: Annotated[Path, typer.Option(help="folder for checkpoints (params.eqx) and history (history.nc), written every epoch")] = Path("runs"),
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train a model on a data set and report test accuracy (and backprop's, on the same network).

    \b
    Examples:
      dynlearn train --model pc --data digits --epochs 20
      dynlearn train --model ep --rule symmetric
      dynlearn train --rule fa --data fashion_mnist
    Checkpoints and the per-epoch history go to OUT/<model>[-<rule>]/ after every epoch.
    """
    from .data import DataUnavailableError, load
    from .errors import DynlearnError
    from .learning import train as run_train
    from .rules import get_learner

    if model is None and rule is None:
        _fail("give --model (e.g. --model pc) or --rule (e.g. --rule fa); `dynlearn list` shows the names")
    sizes = _parse_hidden(hidden)
    try:
        learner = get_learner(_learner_name(model, rule))
        dataset = load(data)
    except DataUnavailableError as e:
        _fail(str(e))
    except (DynlearnError, TypeError) as e:
        _fail(str(e))
    activation = learner.defaults.get("activation")
    reference = get_learner("bp", **({"activation": activation} if activation else {}))
    runs = [learner] + ([reference] if compare_bp and learner.name != "bp" else [])
    lr = learner.defaults.get("lr", 1e-3) if lr is None else lr
    con = _console()
    rows = []
    for lrn in runs:
        folder = out / lrn.name.replace("/", "-")
        try:
            _, hist = run_train(
                lrn, dataset, hidden=sizes, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed, progress=progress, checkpoint_dir=folder
            )
        except DynlearnError as e:
            _fail(str(e))
        metric = "test_accuracy" if "test_accuracy" in hist else "test_mse"
        rows.append((lrn.name, float(hist[metric][-1]), float(hist[metric].max()), float(hist.seconds[1:].mean()) if epochs > 1 else float(hist.seconds[0]), folder))
    from rich.table import Table

    table = Table(title=f"{data}, network {dataset.n_features}-{'-'.join(map(str, sizes))}-{dataset.n_outputs}, {epochs} epochs")
    for col in ("learner", metric.replace("_", " ") + " (last)", "best", "s/epoch", "saved in"):
        table.add_column(col)
    for name, last, best, sec, folder in rows:
        table.add_row(name, f"{last:.4f}", f"{best:.4f}", f"{sec:.3f}", str(folder))
    con.print(table)


def _check_table(results, title: str):
    from rich.table import Table

    from .theorems.criteria import is_reported

    table = Table(title=title)
    for col, kw in (("check", {}), ("quantity", {}), ("measured", {"justify": "right"}), ("tolerance", {}), ("result", {}), ("s", {"justify": "right"})):
        table.add_column(col, **kw)
    for r in results:
        for i, (key, value) in enumerate(r.verdict.measured.items()):
            ok = key not in r.verdict.failed
            verdict = "reported" if is_reported(r.verdict.tolerance[key]) else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")
            table.add_row(
                r.name if i == 0 else "",
                key,
                _fmt(value),
                r.verdict.tolerance[key],
                verdict,
                f"{r.seconds:.1f}" if i == 0 else "",
                end_section=i == len(r.verdict.measured) - 1,
            )
    return table


@app.command()
def check(
    names: Annotated[Optional[list[str]], typer.Argument(help="checks to run (default: all; see `dynlearn list`)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="small configurations (seconds each) instead of paper scale")] = False,
    family: Annotated[Optional[str], typer.Option(help="only checks of one family (pc, ep, feedback, pal, microcircuit)")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write results as JSON: a list of {name, passed, measured, tolerance}")] = None,
    figs: Annotated[Optional[Path], typer.Option(help="also make every figure into this folder, reusing the checks' results")] = None,
) -> None:
    """Run theorem checks (float64) and print measured figures against their tolerances.

    Each check measures what a theorem predicts (an error slope, a cosine, a residual, an angle) and
    compares it with the prediction at a stated tolerance; `theory/<check>.md` explains each one.
    The exit code is 1 if any check fails.
    """
    from .errors import DynlearnError
    from .results import atomic_write
    from .theorems import checks, run_checks

    start = time.perf_counter()
    available = checks()
    selected = list(names) if names else [n for n, c in available.items() if family is None or c.family == family]
    unknown = [n for n in selected if n not in available]
    if unknown:
        _fail(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(available)}")
    if not selected:
        _fail(f"no checks in family {family!r}")
    try:
        results = run_checks(selected, quick=quick, progress=True)
    except DynlearnError as e:
        _fail(str(e))
    if json_path is not None:
        payload = json.dumps([r.to_json() for r in results], indent=2)
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(payload))
    con = _console()
    con.print(_check_table(results, f"theorem checks ({'quick' if quick else 'full'})"))
    made = []
    if figs is not None:
        made = _make_figures(None, quick, figs)
    n_pass = sum(r.passed for r in results)
    summary = f"{n_pass}/{len(results)} checks passed"
    if figs is not None:
        summary += f", {len(made)} figures in {figs}"
    if json_path is not None:
        summary += f", results in {json_path}"
    con.print(f"[bold]{summary}[/bold] ({time.perf_counter() - start:.0f} s)")
    if n_pass < len(results):
        raise typer.Exit(1)


def _make_figures(names, quick: bool, out: Path):
    from tqdm.auto import tqdm

    from .figures import figure_specs, make_figure

    specs = figure_specs()
    selected = list(names) if names else list(specs)
    unknown = [n for n in selected if n not in specs]
    if unknown:
        _fail(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    made = []
    bar = tqdm(selected, desc="figures", unit="fig", file=sys.stderr)
    for n in bar:
        bar.set_postfix_str(n)
        png, nc = make_figure(n, quick=quick, out=out)
        made.append(png)
    bar.close()
    return made


@app.command()
def figs(
    names: Annotated[Optional[list[str]], typer.Argument(help="figures to make (default: all; see `dynlearn list`)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="quick configurations instead of paper scale")] = False,
    out: Annotated[Path, typer.Option(help="output folder: NAME.png and NAME.nc (data with provenance) per figure")] = Path("figures"),
) -> None:
    """Regenerate figures: each is a PNG plus the plotted data as netCDF, with versions, seed and config."""
    start = time.perf_counter()
    made = _make_figures(names, quick, out)
    _console().print(f"[bold]{len(made)} figures written to {out}[/bold] ({time.perf_counter() - start:.0f} s)")


@app.command()
def docs(
    json_path: Annotated[Path, typer.Option("--json", help="results of `dynlearn check --quick --json PATH`")] = Path("theory/checks.json"),
    theory: Annotated[Path, typer.Option(help="folder of the theory pages")] = Path("theory"),
) -> None:
    """Rewrite the generated part of every theory page (criteria and measured values) from the registry and a
    check run's JSON. Run `dynlearn check --quick --json theory/checks.json` first."""
    from .theorems.pages import write_pages

    if not json_path.exists():
        _fail(f"{json_path} does not exist; run `dynlearn check --quick --json {json_path}` first")
    if not theory.is_dir():
        _fail(f"--theory {theory} is not a folder")
    changed = write_pages(theory, json_path)
    typer.echo(f"{len(changed)} theory page(s) updated from {json_path}")


def main() -> None:  # pragma: no cover - entry point
    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
