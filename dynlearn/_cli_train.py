"""The parts of ``dynlearn train`` that are not its options: resuming, naming, one run, the result table."""

from __future__ import annotations

from pathlib import Path

import typer

from .cli import _console, _fail


def _resumed_options(run: Path, epochs: int | None) -> dict:
    """The command-line options a run folder was started with (its ``config.json``), ``epochs`` possibly raised."""
    from .runs import read_config

    cli = read_config(run).get("metadata", {}).get("cli")
    if not cli:
        _fail(f"{run} was not started by `dynlearn train`; resume it from Python with train(..., checkpoint_dir=..., resume=True)")
    return {**cli, "epochs": epochs or cli["epochs"]}


def _default_name(learner, cli: dict) -> str:
    from .runs import default_run_name

    return default_run_name({"learner": learner.name, **cli})


def _train_one(learner, dataset, sizes, cli: dict, folder: Path, resume: bool, progress: bool):
    from .learning import train as run_train

    _, hist = run_train(
        learner, dataset, hidden=sizes, epochs=cli["epochs"], batch_size=cli["batch_size"], lr=cli["lr"], optimizer=cli["optimizer"], seed=cli["seed"],
        progress=progress, checkpoint_dir=folder, resume=resume, checkpoint_every=cli["checkpoint_every"], metadata={"cli": cli},
        weight_decay=cli.get("weight_decay", 0.0),
    )
    metric = "test_accuracy" if "test_accuracy" in hist else "test_mse"
    sec = float(hist.seconds[1:].mean()) if hist.sizes["epoch"] > 1 else float(hist.seconds[0])
    return learner.name, metric, float(hist[metric][-1]), float(hist[metric].max()), sec, folder


def _train_table(data: str, dataset, sizes, epochs: int, rows) -> None:
    from rich.table import Table

    metric = rows[0][1]
    table = Table(title=f"{data}, network {dataset.n_features}-{'-'.join(map(str, sizes))}-{dataset.n_outputs}, {epochs} epochs")
    for col in ("learner", metric.replace("_", " ") + " (last)", "best", "s/epoch", "saved in"):
        table.add_column(col)
    for name, _, last, best, sec, folder in rows:
        table.add_row(name, f"{last:.4f}", f"{best:.4f}", f"{sec:.3f}", str(folder))
    _console().print(table)
    if metric == "test_accuracy":
        chance = 1.0 / dataset.n_outputs
        for name, _, _, best, _, _ in rows:
            if best <= min(2 * chance, chance + 0.1):
                typer.echo(f"warning: {name} never rose clearly above chance ({best:.3f}, chance {chance:.3f}): the learning rate is probably "
                           "far too high or too low for it (see the learner's default in `dynlearn list --options`)", err=True)
