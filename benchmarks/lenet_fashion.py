"""LeNet-5 on Fashion-MNIST trained by backprop and by the feedback-alignment rules (FA, DFA, uSF by default).

    python benchmarks/lenet_fashion.py [--epochs 3] [--n-train 10000] [--n-test 10000] [--rules bp fa dfa usf]
    python benchmarks/lenet_fashion.py --validation 10000 --epochs 20 --rules bp fa dfa usf brsf frsf --json out.json

With ``--validation N`` the last N training images are held out (BioTorch's protocol: 50k train, 10k validation);
after every epoch the model is scored on the validation and the test set, and the table reports the test error of
the epoch with the best validation accuracy (the "best validation model"). Epochs are trained one call at a time,
resuming from the run's checkpoint, which ends bit-identical to one uninterrupted run.

Every rule trains the same LeNet-5 (:func:`dynlearn.networks.lenet5`, same initial weights for every rule) with
:func:`dynlearn.learning.train`: Adam, mini-batches of ``--batch-size``, softmax cross-entropy by default. The rules
differ only in how the error reaches the hidden layers: BP through ``Wᵀ``, FA through fixed random layers of the same
structure (random kernels for the convolutions), DFA from the output error straight to every hidden layer through a
fixed random matrix, uSF through ``sign(W)`` at a uniform scale. Printed: test accuracy after every epoch and seconds
per epoch (the first epoch includes compilation). Fashion-MNIST comes from the Debian package
``dataset-fashion-mnist`` (``dynlearn.data.load("fashion_mnist")``).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402

from dynlearn.data import Dataset, load  # noqa: E402
from dynlearn.figures.lenet_fashion import train_with_validation  # noqa: E402
from dynlearn.learning import train  # noqa: E402
from dynlearn.networks import lenet5  # noqa: E402
from dynlearn.rules import get_learner  # noqa: E402


def fashion_images(n_train: int | None, n_test: int | None) -> Dataset:
    """Fashion-MNIST with each input as a (1, 28, 28) image."""
    return load("fashion_mnist", n_train=n_train, n_test=n_test).as_images((1, 28, 28))


def run(rule: str, data: Dataset, args) -> dict:
    if args.validation:
        return {"rule": rule, **train_with_validation(rule, data, n_validation=args.validation, epochs=args.epochs, seed=args.seed,
                                                      lr=args.lr, batch_size=args.batch_size, loss=args.loss, activation=args.activation)}
    learner = get_learner(rule, activation=args.activation, loss=args.loss)
    network = lenet5(key=jax.random.key(args.seed), activation=args.activation)
    _, hist = train(learner, data, network=network, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=False)
    return {"rule": rule, "test_accuracy": [float(a) for a in hist.test_accuracy.values],
            "train_accuracy": float(hist.train_accuracy.values[-1]), "seconds": [float(s) for s in hist.seconds.values]}


def table(rows: list[dict], epochs: int) -> str:
    head = f"{'rule':<6}" + "".join(f"  acc@{e:<3d}" for e in range(1, epochs + 1)) + "  train acc  s/epoch (each)"
    if rows and "best_epoch" in rows[0]:
        head += "  best val epoch  test error there (%)"
    lines = [head, "-" * len(head)]
    for r in rows:
        accs = "".join(f"  {a:7.4f}" for a in r["test_accuracy"])
        secs = ", ".join(f"{s:.1f}" for s in r["seconds"])
        best = f"  {r['best_epoch']:14d}  {r['test_error_at_best']:.2f}" if "best_epoch" in r else ""
        lines.append(f"{r['rule']:<6}{accs}  {r['train_accuracy']:9.4f}  {secs}{best}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=None, help="first N training images (default: all 60000)")
    parser.add_argument("--n-test", type=int, default=None, help="first N test images (default: all 10000)")
    parser.add_argument("--rules", nargs="+", default=["bp", "fa", "dfa", "usf"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--loss", default="ce", choices=["ce", "mse"])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", type=int, default=0, help="hold out the last N training images (BioTorch: 10000)")
    parser.add_argument("--json", default=None, help="write the rows as JSON to this file")
    args = parser.parse_args()
    data = fashion_images(args.n_train, args.n_test)
    print(
        f"LeNet-5 on Fashion-MNIST: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images, {args.epochs} epochs, "
        f"Adam {args.lr:g}, batch {args.batch_size}, {args.loss}, {args.activation}, seed {args.seed}",
        flush=True,
    )
    if not 0 <= args.validation < data.x_train.shape[0]:
        parser.error(f"--validation must be in [0, {data.x_train.shape[0]}), got {args.validation}")
    rows = []
    for rule in args.rules:
        rows.append(run(rule, data, args))
        print(f"  {rule}: test accuracy {rows[-1]['test_accuracy']}, seconds {rows[-1]['seconds']}", flush=True)
        if args.json:  # after every rule: a long run keeps what it has measured
            with open(args.json, "w") as f:
                json.dump({"config": vars(args), "rows": rows}, f, indent=1)
    print(table(rows, args.epochs))


if __name__ == "__main__":
    main()
