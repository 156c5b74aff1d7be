"""dynlearn's predictive coding against pcx, jpc and plain-JAX backprop on the same work, interleaved in one run.

Same architecture (MLP in-128-128-10, ReLU, squared-error output), batch 64, T = 20 inference steps, Adam 1e-3
on the weights, the same train/test split and batch order. Each contestant runs in its own process (pcx and jpc
in their own virtual environments made by ``benchmarks/setup_peers.sh``: they pin older JAX versions), and the
processes are interleaved: repeat 1 runs every contestant once, then repeat 2, ... so that a change in the
machine's load hits every contestant alike.

    python benchmarks/compare.py --quick                       # digits, 2 epochs, 2 repeats (about a minute)
    python benchmarks/compare.py --dataset fashion_mnist --epochs 1 --repeats 2
    python benchmarks/compare.py --out results/compare         # JSON + plot there
    python benchmarks/compare.py --inputs standardised         # pixels scaled as in the peers' examples

Contestants: ``dynlearn-euler`` (PC, output clamped, fixed-step Euler x T via
``RelaxConfig(solver="euler", dt0=dt, t1=T*dt, steady=False)``), ``dynlearn-steady`` (PC with the default
inference: Tsit5 to max|dx/dt| <= 1e-2; GELU, since ReLU makes the flow non-smooth), ``pcx`` (SGD on the states,
lr 0.1, T steps), ``jpc`` (where importable) and ``bp`` (a hand-written JAX MLP with ``jax.grad``). Printed: compile
time (first step), time per step on a fixed batch and per epoch (min and median over repeats), test accuracy per
epoch, and the ratios dynlearn / peer of the median time per epoch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".venv"
ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "JAX_PLATFORMS": "cpu"}
CONTESTANTS = ("dynlearn-euler", "dynlearn-steady", "dynlearn-scan", "hand-scan", "pcx", "jpc", "bp")
HIDDEN, LR = (128, 128), 1e-3


# ----------------------------------------------------------------------------------------------- contestants
def _dynlearn(kind: str, sizes, T: int, dt: float, seed: int):
    import equinox as eqx
    import jax
    import optax

    from dynlearn.learning import init_params, make_step
    from dynlearn.rules import get_learner

    if kind == "euler":
        learner = get_learner("pc/clamped", activation="relu", solver="euler", dt0=dt, t1=T * dt, steady=False)
    else:
        learner = get_learner("pc/clamped", activation="gelu")
    key = jax.random.key(seed)
    params = init_params(learner, key, sizes)
    opt = optax.adam(LR)
    state = (params, learner.rule.init(key, params), opt.init(eqx.filter(params, eqx.is_inexact_array)))
    step_ = make_step(learner, opt)

    def step(s, x, y):
        p, r, o, _ = step_(*s, x, y, key)
        return (p, r, o)

    predict = eqx.filter_jit(learner.predict)
    return step, state, lambda s, x: predict(s[0], x)


def _bp(sizes, seed: int):
    import jax
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    params = []
    for k, (m, n) in zip(keys, itertools.pairwise(sizes)):
        kw, kb = jax.random.split(k)
        lim = 1 / np.sqrt(m)  # equinox's (and pcx's) default uniform initialisation
        params.append((jax.random.uniform(kw, (m, n), minval=-lim, maxval=lim), jax.random.uniform(kb, (n,), minval=-lim, maxval=lim)))

    def forward(p, x):
        for i, (w, b) in enumerate(p):
            x = x @ w + b
            x = jax.nn.relu(x) if i < len(p) - 1 else x
        return x

    def loss(p, x, y):
        return 0.5 * jnp.sum((forward(p, x) - y) ** 2)

    opt = optax.adam(LR)

    @jax.jit
    def step(s, x, y):
        p, o = s
        g = jax.grad(loss)(p, x, y)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o

    return step, (params, opt.init(params)), jax.jit(lambda s, x: forward(s[0], x))


def _pcx(sizes, T: int, batch: int, seed: int):
    import jax
    import optax
    import pcx as px
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    class MLP(pxc.EnergyModule):
        def __init__(self, sizes):
            super().__init__()
            self.act_fn = px.static(jax.nn.relu)
            self.layers = [pxnn.Linear(m, n) for m, n in itertools.pairwise(sizes)]
            self.vodes = [pxc.Vode() for _ in sizes[1:]]
            self.vodes[-1].h.frozen = True  # the output is clamped to the target

        def __call__(self, x, y=None):
            for v, layer in zip(self.vodes[:-1], self.layers[:-1]):
                x = v(self.act_fn(layer(x)))
            x = self.vodes[-1](self.layers[-1](x))
            if y is not None:
                self.vodes[-1].set("h", y)
            return self.vodes[-1].get("u")

    px.RKG.seed(seed)
    model = MLP(sizes)
    vmask = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))

    @pxf.vmap(vmask, in_axes=(0, 0), out_axes=0)
    def forward(x, y, *, model):
        return model(x, y)

    @pxf.vmap(vmask, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
    def energy(x, *, model):
        y_ = model(x, None)
        return jax.lax.psum(model.energy(), "batch"), y_

    @pxf.jit()
    def train_on_batch(x, y, *, model, optim_w, optim_h):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)
        optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True)(energy)(x, model=model)
            optim_h.step(model, g["model"])
        optim_h.clear()
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(pxu.M_hasnot(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(x, model=model)
        optim_w.step(model, g["model"])

    @pxf.jit()
    def predict_batch(x, *, model):
        model.eval()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            return forward(x, None, model=model)

    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jax.numpy.zeros((batch, sizes[0])), None, model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(0.1))
        optim_w = pxu.Optim(lambda: optax.adam(LR), pxu.M(pxnn.LayerParam)(model))

    def step(s, x, y):
        train_on_batch(x, y, model=model, optim_w=optim_w, optim_h=optim_h)
        return s

    def predict(s, x):
        n = x.shape[0] // batch * batch  # pcx's vodes keep the batch size: predict in whole batches
        return np.concatenate([np.asarray(predict_batch(x[i : i + batch], model=model)) for i in range(0, n, batch)])

    return step, None, predict, lambda: [layer.nn.weight.get() for layer in model.layers]


def _jpc(sizes, T: int, dt: float, seed: int):
    import equinox as eqx
    import jax
    import jpc
    import optax

    model = jpc.make_mlp(jax.random.key(seed), input_dim=sizes[0], width=sizes[1], depth=len(sizes) - 1, output_dim=sizes[-1], act_fn="relu")
    opt = optax.adam(LR)

    def step(s, x, y):
        m, o = s
        r = jpc.make_pc_step(m, opt, o, y, x, max_t1=T, dt=dt)
        return r["model"], r["opt_state"]

    return step, (model, opt.init(eqx.filter(model, eqx.is_array))), lambda s, x: jpc.init_activities_with_ffwd(s[0], x)[-1]


# ----------------------------------------------------------------------------------------------- one process
def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def run_worker(name: str, data: Path, epochs: int, batch: int, T: int, dt: float, seed: int, step_reps: int) -> dict:
    """Train ``name`` for ``epochs`` on the split in ``data`` and time it; returns the measurements."""
    import jax.numpy as jnp

    d = np.load(data)
    xtr, ytr, xte, lte = d["x_train"], d["y_train"], d["x_test"], d["labels_test"]
    sizes = (xtr.shape[1], *HIDDEN, ytr.shape[1])
    sync, run_epoch = _block, None
    if name == "dynlearn-euler":
        step, state, predict = _dynlearn("euler", sizes, T, dt, seed)
    elif name == "dynlearn-steady":
        step, state, predict = _dynlearn("steady", sizes, T, dt, seed)
    elif name in ("dynlearn-scan", "hand-scan"):
        from scan_contestants import dynlearn_scan, hand_scan

        step, state, predict, run_epoch = (dynlearn_scan if name == "dynlearn-scan" else hand_scan)(sizes, T, dt, seed)
    elif name == "bp":
        step, state, predict = _bp(sizes, seed)
    elif name == "pcx":
        step, state, predict, weights = _pcx(sizes, T, batch, seed)
        sync = lambda s: _block(weights())
    elif name == "jpc":
        step, state, predict = _jpc(sizes, T, dt, seed)
    else:
        raise SystemExit(f"unknown contestant {name!r}; choose from {CONTESTANTS}")
    n_batches = xtr.shape[0] // batch
    rng = np.random.default_rng(seed)
    x0, y0 = jnp.asarray(xtr[:batch]), jnp.asarray(ytr[:batch])
    t = time.perf_counter()
    state = step(state, x0, y0)  # the first step: trace + compile + run (a real training step for everyone)
    sync(state)
    compile_s = time.perf_counter() - t
    epoch_s, acc = [], []
    for _ in range(epochs):
        order = rng.permutation(xtr.shape[0])[: n_batches * batch].reshape(n_batches, batch)
        if run_epoch is not None:  # the whole epoch in one compiled call (its first call compiles it)
            xd, yd, od = jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(order)
            if not epoch_s:
                t = time.perf_counter()
                sync(run_epoch(state, xd, yd, od))
                compile_s += time.perf_counter() - t
            t = time.perf_counter()
            state = run_epoch(state, xd, yd, od)
            sync(state)
            epoch_s.append(time.perf_counter() - t)
            out = np.asarray(predict(state, jnp.asarray(xte)))
            acc.append(float(np.mean(out.argmax(-1) == lte[: out.shape[0]])))
            continue
        xs, ys = [jnp.asarray(xtr[i]) for i in order], [jnp.asarray(ytr[i]) for i in order]
        sync((xs, ys))
        t = time.perf_counter()
        for x, y in zip(xs, ys):
            state = step(state, x, y)
        sync(state)
        epoch_s.append(time.perf_counter() - t)
        out = np.asarray(predict(state, jnp.asarray(xte)))
        acc.append(float(np.mean(out.argmax(-1) == lte[: out.shape[0]])))
    step_s = []
    for _ in range(step_reps):
        t = time.perf_counter()
        state = step(state, x0, y0)
        sync(state)
        step_s.append(time.perf_counter() - t)
    return {"name": name, "compile_s": compile_s, "epoch_s": epoch_s, "step_s": step_s, "accuracy": acc, "batches_per_epoch": n_batches}


# ----------------------------------------------------------------------------------------------- the driver
def _python_for(name: str) -> str | None:
    if name.startswith("dynlearn") or name in ("bp", "hand-scan"):
        return sys.executable
    py = PEERS / name / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", f"import {name}"], check=False, capture_output=True).returncode == 0:
        return str(py)
    return None


INPUTS = ("unit", "standardised")


def _save_split(dataset: str, path: Path, inputs: str = "unit") -> None:
    """The split every contestant reads. ``inputs="unit"``: pixels in [0, 1] as :func:`dynlearn.data.load` gives
    them; ``"standardised"``: ``(x - m) / s`` with the scalar mean and standard deviation of the training pixels,
    the ``Normalize(mean, std)`` step of the peers' own MNIST examples (test pixels use the training statistics)."""
    from dynlearn.data import load

    if inputs not in INPUTS:
        raise SystemExit(f"--inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    d = load(dataset)
    xtr, xte = d.x_train.reshape(len(d.x_train), -1), d.x_test.reshape(len(d.x_test), -1)
    if inputs == "standardised":
        m, s = float(xtr.mean()), float(xtr.std())
        if not s > 0:
            raise SystemExit(f"--inputs standardised: the training pixels of {dataset} have no spread (std {s})")
        xtr, xte = (xtr - m) / s, (xte - m) / s
    np.savez(path, x_train=xtr.astype(np.float32), y_train=d.y_train, x_test=xte.astype(np.float32), labels_test=d.labels_test)


def summarise(runs: list[dict]) -> dict:
    """Min and median over repeats of the times; accuracy per epoch averaged over repeats; ratios of median s/epoch."""
    out = {}
    for name in dict.fromkeys(r["name"] for r in runs):
        rs = [r for r in runs if r["name"] == name]
        ep = [e for r in rs for e in r["epoch_s"]]
        st = [s for r in rs for s in r["step_s"]]
        out[name] = {
            "epoch_s_min": min(ep), "epoch_s_median": statistics.median(ep),
            "step_ms_min": 1e3 * min(st), "step_ms_median": 1e3 * statistics.median(st),
            "compile_s_median": statistics.median(r["compile_s"] for r in rs),
            "accuracy": [float(np.mean(a)) for a in zip(*(r["accuracy"] for r in rs))],
            "repeats": len(rs),
        }
    for mine in ("dynlearn-euler", "dynlearn-steady", "dynlearn-scan"):
        for peer in ("pcx", "jpc", "bp", "hand-scan"):
            if mine in out and peer in out:
                out[mine][f"ratio_to_{peer}"] = out[mine]["epoch_s_median"] / out[peer]["epoch_s_median"]
    return out


def print_table(summary: dict, skipped: dict) -> None:
    head = f"{'contestant':16s} {'s/epoch min':>11s} {'median':>8s} {'ms/step min':>11s} {'median':>8s} {'compile s':>9s}  accuracy per epoch"
    print(head + "\n" + "-" * len(head))
    for name, s in summary.items():
        acc = " ".join(f"{100 * a:.1f}" for a in s["accuracy"])
        print(f"{name:16s} {s['epoch_s_min']:11.3f} {s['epoch_s_median']:8.3f} {s['step_ms_min']:11.3f} {s['step_ms_median']:8.3f} {s['compile_s_median']:9.2f}  {acc}")
    for name, why in skipped.items():
        print(f"{name:16s} skipped: {why}")
    for mine in ("dynlearn-euler", "dynlearn-steady", "dynlearn-scan"):
        ratios = [f"/{k[9:]} = {v:.2f}" for k, v in summary.get(mine, {}).items() if k.startswith("ratio_to_")]
        if ratios:
            print(f"{mine}: " + ", ".join(ratios) + "  (median s/epoch)")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    med = [summary[n]["epoch_s_median"] for n in names]
    lo = [summary[n]["epoch_s_median"] - summary[n]["epoch_s_min"] for n in names]
    a.bar(names, med, yerr=[lo, [0] * len(names)], color="tab:blue")
    a.set_ylabel("s / epoch (median; bar down to min)")
    a.tick_params(axis="x", rotation=30)
    for n in names:
        acc = summary[n]["accuracy"]
        b.plot(range(1, len(acc) + 1), [100 * v for v in acc], marker="o", label=n)
    b.set_xlabel("epoch")
    b.set_ylabel("test accuracy (%)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 epochs, 2 repeats, 20 timed steps")
    p.add_argument("--dataset", default="digits", help="digits or fashion_mnist (dynlearn.data.load)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--steps", type=int, default=20, help="inference steps T")
    p.add_argument("--dt", type=float, default=0.1, help="Euler step of the fixed-budget PC contestants")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inputs", choices=INPUTS, default="unit", help="pixels in [0, 1] (unit) or standardised by the training set's mean and std, as in the peers' examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=",".join(CONTESTANTS), help="comma-separated contestants")
    p.add_argument("--out", default="benchmarks/results", help="folder for compare_<dataset>.json and .png")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    epochs = a.epochs or (2 if a.quick else 5)
    repeats = a.repeats or (2 if a.quick else 3)
    step_reps = 20 if a.quick else 100
    if a.worker:
        res = run_worker(a.worker, Path(a.data), epochs, a.batch, a.steps, a.dt, a.seed, step_reps)
        Path(a.result).write_text(json.dumps(res))
        return
    names = [n for n in a.only.split(",") if n]
    pythons = {n: _python_for(n) for n in names}
    skipped = {n: "not importable (run benchmarks/setup_peers.sh; jpc is not on the registry)" for n, py in pythons.items() if py is None}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "split.npz"
        _save_split(a.dataset, data, a.inputs)
        for r in range(repeats):
            for n in names:
                if pythons[n] is None:
                    continue
                res = Path(tmp) / f"{n}_{r}.json"
                cmd = [pythons[n], __file__, "--worker", n, "--data", str(data), "--result", str(res), "--epochs", str(epochs),
                       "--steps", str(a.steps), "--dt", str(a.dt), "--batch", str(a.batch), "--seed", str(a.seed + r)]
                env = {**os.environ, **ENV, "PYTHONPATH": str(HERE.parent)}
                proc = subprocess.run(cmd + (["--quick"] if a.quick else []), env=env, check=False, capture_output=True, text=True)
                if proc.returncode != 0:
                    skipped[n] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
                    pythons[n] = None
                    continue
                runs.append(json.loads(res.read_text()))
                print(f"repeat {r + 1}/{repeats} {n}: {statistics.median(runs[-1]['epoch_s']):.3f} s/epoch", file=sys.stderr)
    summary = summarise(runs)
    print(f"{a.dataset} ({a.inputs} inputs): MLP {'-'.join(map(str, HIDDEN))}, batch {a.batch}, T = {a.steps}, Adam {LR:g}, {epochs} epochs x {repeats} repeats, interleaved")
    print_table(summary, skipped)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = a.dataset if a.inputs == "unit" else f"{a.dataset}_{a.inputs}"
    meta = {"dataset": a.dataset, "epochs": epochs, "repeats": repeats, "T": a.steps, "dt": a.dt, "batch": a.batch, "inputs": a.inputs}
    (out / f"compare_{tag}.json").write_text(json.dumps({"config": meta, "summary": summary, "skipped": skipped, "runs": runs}, indent=1))
    plot(summary, out / f"compare_{tag}.png")
    print(f"wrote {out / f'compare_{tag}.json'} and .png")


if __name__ == "__main__":
    main()
