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
  dynlearn check                               # every theorem check, quick configs, a pass/fail table
  dynlearn check pc_bp_limit --full --json r.json   # one check at paper scale, figures in JSON
  dynlearn check pc_bp_limit --figs figures    # one check and the figures of its theory page
  dynlearn figs --out figures                  # every figure (quick) as PNG + PDF + netCDF data
  dynlearn train --model pc --data digits      # predictive coding on scikit-learn's digits, vs backprop
  dynlearn train --model pc --set activation=relu --set nudge=0.05   # learner options
  dynlearn list                                # models, rules, checks and figures known to this version
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _console():
    from rich.console import Console

    # a pipe or a log file gets a wide table instead of rich's 80-column default
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _fmt(value: float) -> str:
    return f"{value:.10g}" if 0.999 < abs(value) < 1 else f"{value:.6g}"


def _fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit ``code`` (2: the command was used wrongly, 1: it failed while running)."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


_DEBUG = {"on": bool(os.environ.get("DYNLEARN_DEBUG"))}


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"dynlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an error instead of one line")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version, help="print the version and exit")] = False,
) -> None:
    _DEBUG["on"] = debug or bool(os.environ.get("DYNLEARN_DEBUG"))


def _handled(command):
    """Run ``command`` turning every :class:`dynlearn.DynlearnError` into one line on stderr with exit code 2 (usage:
    a bad argument, name or path) or 1 (runtime: no convergence, divergence, missing data), and any other exception
    into one line with exit code 1; ``dynlearn --debug`` (or ``DYNLEARN_DEBUG=1``) re-raises instead."""
    import functools

    @functools.wraps(command)
    def run(*args, **kwargs):
        from .errors import USAGE_ERRORS, DynlearnError

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except DynlearnError as e:
            if _DEBUG["on"]:
                raise
            _fail(f"{e} ({type(e).__name__})" if not isinstance(e, USAGE_ERRORS) else str(e), 2 if isinstance(e, USAGE_ERRORS) else 1)
        except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback with --debug
            if _DEBUG["on"]:
                raise
            _fail(f"internal error {type(e).__name__}: {e} (rerun with dynlearn --debug for the traceback)", 1)

    return run


@app.command("list")
def list_all(
    options: Annotated[bool, typer.Option("--options", help="also show each learner's options and defaults (set with dynlearn train --set KEY=VALUE)")] = False,
) -> None:
    """List the models/rules, theorem checks and figures this version knows."""
    from .figures import figure_specs
    from .rules import LEARNERS, get_learner, learner_names
    from .theorems import checks

    con = _console()
    con.print("[bold]models and rules[/bold] (dynlearn train --model NAME, or --rule NAME)")
    names = learner_names()
    width = max(map(len, names)) + 1
    for name in names:
        con.print(f"  {name:<{width}} {get_learner(name).description}")
        if options:
            import inspect

            params = inspect.signature(LEARNERS[name]).parameters.values()
            shown = ", ".join(f"{p.name}={p.default!r}" for p in params if p.kind is p.KEYWORD_ONLY)
            con.print(f"  {'':<{width}} [dim]--set {shown or '(no options)'}[/dim]")
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
    if not sizes:
        _fail(f"--hidden must name at least one hidden layer width such as 128,128, got {hidden!r}")
    if any(s <= 0 for s in sizes):
        _fail(f"--hidden widths must be positive, got {hidden!r}")
    return sizes


def _learner_name(model: str | None, rule: str | None) -> str:
    """``--model M --rule R`` names the learner ``M/R`` (``pc/clamped``, ``ep/one_sided``); either alone names itself."""
    if model and rule:
        return rule if model == rule else f"{model}/{rule}"
    return model or rule


@app.command()
@_handled
def train(
    model: Annotated[Optional[str], typer.Option(help="model: pc, bp, ep, pal, microcircuit, ... (see `dynlearn list`)")] = None,
    rule: Annotated[Optional[str], typer.Option(help="learning rule: a rule of --model (ep: one_sided|symmetric|holomorphic), or alone a feedforward rule (bp, fa, dfa, kp, wm, usf, brsf, frsf)")] = None,
    data: Annotated[str, typer.Option(help="digits (built in), fashion_mnist (Debian package dataset-fashion-mnist) or teacher_student (regression); on classes a learner with a loss option trains with cross-entropy unless --set loss=mse")] = "digits",
    hidden: Annotated[str, typer.Option(help="hidden layer widths, comma-separated")] = "128,128",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="passes over the training set (default 20; with --resume: the run's own)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per update")] = 64,
    lr: Annotated[Optional[float], typer.Option(help="learning rate, finite and > 0 (default: the learner's own, see `dynlearn list`)")] = None,
    optimizer: Annotated[str, typer.Option(help="adam, adamw, sgd, momentum or rmsprop (in Python, train() takes any optax optimiser)")] = "adam",
    weight_decay: Annotated[float, typer.Option(min=0.0, help="decoupled weight decay λ on the weight arrays, applied outside the optimiser's adaptive step (-lr·λ·W per step, AdamW-style; the backprop reference trains without it). Kolen-Pollack as in the paper: --rule kp --set decay=0 --weight-decay 1")] = 0.0,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="seed for initialisation and batch order")] = 0,
    compare_bp: Annotated[bool, typer.Option(help="also train backprop on the same network and data (in OUT/NAME-bp), and report both")] = True,
    out: Annotated[Path, typer.Option(help="folder of the run folders")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="run folder name (default: <learner>-<UTC time>-<config hash>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue the run in this folder from its last checkpoint (its config.json gives every option)")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(min=1, help="also checkpoint every N steps (default: after every epoch)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="a learner option KEY=VALUE, repeatable (e.g. --set nudge=0.01 --set activation=relu); `dynlearn list --options` shows each learner's")] = None,
) -> None:
    """Train a model on a data set and report test accuracy (and backprop's, on the same network).

    \b
    Examples:
      dynlearn train --model pc --data digits --epochs 20
      dynlearn train --model ep --rule symmetric --name ep-sym
      dynlearn train --rule fa --data fashion_mnist
      dynlearn train --resume runs/ep-sym --epochs 40
      dynlearn train --model pc --set activation=relu --set nudge=0.05
      dynlearn train --rule kp --set decay=0 --weight-decay 1     # KP's decay outside Adam
    Each run gets its own folder OUT/NAME with config.json and an atomic checkpoint after every epoch
    (params, optimiser and rule state, position, history.nc); --resume continues it bit-identically.
    """
    from . import validation
    from ._cli_train import _default_name, _resumed_options, _train_one, _train_table
    from .data import load
    from ._cli_options import parse_set
    from .learning import make_optimizer
    from .rules import get_learner

    options = parse_set(set_)
    if resume is not None:
        opts = _resumed_options(resume, epochs)
        model, rule, data, hidden, batch_size = opts["model"], opts["rule"], opts["data"], opts["hidden"], opts["batch_size"]
        lr, optimizer, seed, checkpoint_every, epochs, compare_bp = opts["lr"], opts["optimizer"], opts["seed"], opts["checkpoint_every"], opts["epochs"], False
        weight_decay = opts.get("weight_decay", 0.0)
        if options:
            _fail("--set cannot change a resumed run: its options come from its config.json")
        options = opts.get("options", {})
    epochs = 20 if epochs is None else epochs
    if model is None and rule is None:
        _fail("give --model (e.g. --model pc) or --rule (e.g. --rule fa); `dynlearn list` shows the names")
    sizes = _parse_hidden(hidden)
    learner = get_learner(_learner_name(model, rule), **options)
    lr = learner.defaults.get("lr", 1e-3) if lr is None else lr
    make_optimizer(optimizer, lr)  # names and lr checked before any work
    if resume is None:
        validation.output_dir(out, "--out")
    dataset = load(data)
    if resume is None and dataset.is_classification and "loss" in learner.defaults and "loss" not in options:
        options = {**options, "loss": "ce"}  # classes: softmax cross-entropy (the library's default loss is MSE)
        learner = get_learner(_learner_name(model, rule), **options)
    shared = {k: learner.defaults[k] for k in ("activation", "loss") if k in learner.defaults}
    reference = get_learner("bp", **shared)
    cli = {"model": model, "rule": rule, "data": data, "hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr,
           "optimizer": optimizer, "seed": seed, "checkpoint_every": checkpoint_every, "options": options,
           **({"weight_decay": weight_decay} if weight_decay else {})}
    folder = resume if resume is not None else out / (name or _default_name(learner, cli))
    runs = [(learner, folder)] + ([(reference, folder.with_name(folder.name + "-bp"))] if compare_bp and learner.name != "bp" else [])
    plain = {k: v for k, v in cli.items() if k != "weight_decay"}
    rows = [_train_one(lrn, dataset, sizes, dict(plain, model=lrn.name, rule=None, options={}) if lrn is reference else cli, f, resume is not None, progress)
            for lrn, f in runs]
    _train_table(data, dataset, sizes, epochs, rows)


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
@_handled
def check(
    names: Annotated[Optional[list[str]], typer.Argument(help="checks to run (default: all; see `dynlearn list`)")] = None,
    quick: Annotated[bool, typer.Option("--quick/--full", help="small configurations, seconds each (default), or paper scale")] = True,
    family: Annotated[Optional[str], typer.Option(help="only checks of one family (pc, ep, feedback, pal, microcircuit)")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write results as JSON: a list of {name, passed, measured, tolerance}")] = None,
    figs: Annotated[Optional[Path], typer.Option(help="also make the figures of the selected checks (all figures when no check or family is named) into this folder, reusing the checks' results")] = None,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="worker processes (default: one per core, at most 4; 1 runs everything in this process)")] = None,
) -> None:
    """Run theorem checks (float64) and print measured figures against their tolerances.

    Each check measures what a theorem predicts (an error slope, a cosine, a residual, an angle) and
    compares it with the prediction at a stated tolerance; `theory/<check>.md` explains each one.
    The exit code is 1 if any check fails.
    """
    from . import validation
    from .results import atomic_write
    from .theorems import checks

    start = time.perf_counter()
    if json_path is not None:
        validation.output_file(json_path, "--json")
    if figs is not None:
        validation.output_dir(figs, "--figs")
    available = checks()
    selected = list(names) if names else [n for n, c in available.items() if family is None or c.family == family]
    unknown = [n for n in selected if n not in available]
    if unknown:
        _fail(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(available)}")
    if not selected:
        _fail(f"no checks in family {family!r}")
    figures = None if not (names or family) else _check_figures(selected)
    results, made, failed = _run_work(selected, figs, quick, jobs, figures=figures)
    if json_path is not None:
        payload = json.dumps([r.to_json() for r in results], indent=2)
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(payload))
    con = _console()
    con.print(_check_table(results, f"theorem checks ({'quick' if quick else 'full'})"))
    n_pass = sum(r.passed for r in results)
    summary = f"{n_pass}/{len(results)} checks passed"
    if figs is not None:
        summary += f", {len(made)} figures in {figs}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else "")
    if json_path is not None:
        summary += f", results in {json_path}"
    con.print(f"[bold]{summary}[/bold] ({time.perf_counter() - start:.0f} s)")
    if n_pass < len(results) or failed:
        raise typer.Exit(1)


def _figure_names(names) -> list[str]:
    from .figures import figure_specs

    specs = figure_specs()
    selected = list(names) if names else list(specs)
    unknown = [n for n in selected if n not in specs]
    if unknown:
        _fail(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    return selected


def _check_figures(selected: list[str]) -> list[str]:
    from ._cli_options import figures_of_checks
    from .figures import figure_specs

    return figures_of_checks(selected, Path(__file__).resolve().parents[1] / "theory", list(figure_specs()))


def _run_work(checks: list[str], out: Path | None, quick: bool, jobs: int | None, figures=None):
    """Run ``checks`` and (into ``out``) ``figures`` (default: all) on ``jobs`` processes; record the figures' times."""
    from ._cli_options import debug_environment, warn_plot_problems
    from .parallel import default_jobs, recorded_seconds, run_checks_and_figures
    from .results import atomic_write

    if out is None:
        figures = []
    elif figures is None or figures:
        figures = _figure_names(figures)  # None: every figure; names are checked
    root = Path(__file__).resolve().parents[1] / "theory"
    hints = recorded_seconds(root / "checks.json", root / "figure_seconds.json", *([out / "figure_seconds.json"] if out else []))
    with debug_environment(_DEBUG["on"]):  # with --debug a figure that raises shows its traceback instead of one line
        results, made, times, failed = run_checks_and_figures(checks, figures, quick=quick, out=out, jobs=jobs or default_jobs(), seconds=hints)
    if figures:
        payload = json.dumps({n: round(t, 2) for n, t in times.items()}, indent=1)
        atomic_write(out / "figure_seconds.json", lambda tmp: Path(tmp).write_text(payload))
    warn_plot_problems([nc for _, nc in made])
    for name, message in failed.items():
        typer.echo(f"error: figure {name} failed: {message} (rerun with `dynlearn --debug figs {name} --jobs 1` for the traceback)", err=True)
    return results, [png for png, _ in made], failed


@app.command()
@_handled
def figs(
    names: Annotated[Optional[list[str]], typer.Argument(help="figures to make (default: all; see `dynlearn list`)")] = None,
    quick: Annotated[bool, typer.Option("--quick/--full", help="quick configurations (default) or paper scale (minutes to hours: the holistic comparison is a full sweep)")] = True,
    out: Annotated[Path, typer.Option(help="output folder: NAME.png and NAME.nc (data with provenance) per figure")] = Path("figures"),
    jobs: Annotated[Optional[int], typer.Option(min=1, help="worker processes (default: one per core, at most 4; 1 runs everything in this process)")] = None,
) -> None:
    """Regenerate figures: each is a PNG plus the plotted data as netCDF, with versions, seed and config."""
    from . import validation

    validation.output_dir(out, "--out")
    start = time.perf_counter()
    _, made, failed = _run_work([], out, quick, jobs, figures=names)
    _console().print(f"[bold]{len(made)} figures written to {out}[/bold]" + (f", {len(failed)} failed: {', '.join(failed)}" if failed else "")
                     + f" ({time.perf_counter() - start:.0f} s)")
    if failed:
        raise typer.Exit(1)


@app.command()
@_handled
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


from . import _cli_sweep  # noqa: E402,F401  - registers `dynlearn sweep`


def main() -> None:  # pragma: no cover - entry point
    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
