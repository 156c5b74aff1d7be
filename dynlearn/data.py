"""Data that needs no download: scikit-learn's digits, synthetic teacher-student tasks, and
Fashion-MNIST where the Debian package ``dataset-fashion-mnist`` has installed its IDX files.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .errors import DynlearnError, NonFiniteError, ShapeError, UnknownNameError
from . import draws


class DataUnavailableError(DynlearnError, FileNotFoundError):
    """A data set's files are not on this machine."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification or regression data set split into train and test parts (numpy arrays).

    ``y_*`` are one-hot (classification) or real targets (regression); ``labels_*`` the class indices
    (``None`` for regression).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray | None = None
    labels_test: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        """Numbers per input sample (the product of :attr:`sample_shape`)."""
        return int(np.prod(self.sample_shape))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input sample: ``(features,)``, or e.g. ``(1, 28, 28)`` for images."""
        return tuple(self.x_train.shape[1:])

    def as_images(self, shape: tuple[int, ...]) -> Dataset:
        """The same data with each input reshaped to ``shape`` (e.g. ``(1, 28, 28)`` for a LeNet-5)."""
        if int(np.prod(shape)) != self.n_features:
            raise ShapeError(f"{self.name}: cannot reshape {self.n_features} features to {shape}")
        return dataclasses.replace(
            self, x_train=self.x_train.reshape(-1, *shape), x_test=self.x_test.reshape(-1, *shape)
        )

    @property
    def n_outputs(self) -> int:
        return self.y_train.shape[1]

    @property
    def is_classification(self) -> bool:
        return self.labels_train is not None

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.ndim < 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
                raise ShapeError(f"{self.name}: x_{part} {x.shape} and y_{part} {y.shape} must be (n, *sample_shape) and (n, outputs)")
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
                raise NonFiniteError(f"{self.name}: {part} data contain NaN or inf")


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels)]


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, ships with scikit-learn), pixels scaled to [0, 1].

    The split is fixed (stratified, ``seed`` 0 by default): 1437 train, 360 test.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    d = _load()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ltr, lte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    return Dataset("digits", xtr, one_hot(ltr, 10), xte, one_hot(lte, 10), ltr, lte)


FASHION_MNIST_DIRS = (
    "/usr/share/dataset-fashion-mnist",
    "/usr/share/fashion-mnist",
    "/usr/share/datasets/fashion-mnist",
)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist(path: str | os.PathLike | None = None) -> Path:
    """The folder holding Fashion-MNIST's IDX files: ``path``, ``$DYNLEARN_FASHION_MNIST`` or a Debian location."""
    candidates = [path, os.environ.get("DYNLEARN_FASHION_MNIST"), *FASHION_MNIST_DIRS]
    for c in candidates:
        if c is None:
            continue
        c = Path(c)
        if c.is_dir():
            hits = list(c.rglob("train-images-idx3-ubyte*"))
            if hits:
                return hits[0].parent
    raise DataUnavailableError(
        "Fashion-MNIST IDX files not found; install them with `apt-get install dataset-fashion-mnist` "
        "or point DYNLEARN_FASHION_MNIST at a folder holding train-images-idx3-ubyte(.gz) etc."
    )


def load_fashion_mnist(path: str | os.PathLike | None = None, *, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """Fashion-MNIST (60k train / 10k test, 28x28 flattened to 784, pixels in [0, 1]) from local IDX files."""
    root = find_fashion_mnist(path)

    def part(prefix):
        (img,) = [p for p in root.iterdir() if p.name.startswith(f"{prefix}-images-idx3-ubyte")]
        (lab,) = [p for p in root.iterdir() if p.name.startswith(f"{prefix}-labels-idx1-ubyte")]
        return _read_idx(img).reshape(-1, 784).astype(np.float32) / 255.0, _read_idx(lab).astype(np.int64)

    xtr, ltr = part("train")
    xte, lte = part("t10k")
    xtr, ltr = xtr[:n_train], ltr[:n_train]
    xte, lte = xte[:n_test], lte[:n_test]
    return Dataset("fashion_mnist", xtr, one_hot(ltr, 10), xte, one_hot(lte, 10), ltr, lte)


def teacher_student(
    sizes: Sequence[int] = (30, 20, 10),
    *,
    n_train: int = 1000,
    n_test: int = 200,
    activation: str = "tanh",
    seed: int = 0,
    noise: float = 0.0,
) -> Dataset:
    """Regression targets made by a random teacher network with layer widths ``sizes``.

    Inputs ~ U(−1, 1); teacher weights ~ N(0, 1/fan_in); targets = teacher(x) + noise · N(0, 1).
    """
    from .networks import init_network

    key = jax.random.key(seed)
    kt, kx, kn = jax.random.split(key, 3)
    teacher = init_network(sizes, key=kt, activation=activation, scheme="lecun")
    x = draws.uniform(kx, (n_train + n_test, sizes[0]), minval=-1.0, maxval=1.0)
    y = teacher(x) + noise * draws.normal(kn, (n_train + n_test, sizes[-1]))
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    return Dataset(f"teacher_student_{'-'.join(map(str, sizes))}", x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def load(name: str, **kwargs) -> Dataset:
    """A data set by name: ``digits``, ``fashion_mnist`` or ``teacher_student``."""
    loaders = {"digits": load_digits, "fashion_mnist": load_fashion_mnist, "teacher_student": teacher_student}
    try:
        return loaders[name](**kwargs)
    except KeyError:
        raise UnknownNameError(f"unknown data set {name!r}; choose one of {sorted(loaders)}") from None


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, drop_last: bool = True) -> Iterator[tuple[jnp.ndarray, jnp.ndarray]]:
    """Shuffled mini-batches (a fixed number per epoch, so jitted steps see one shape)."""
    if batch_size <= 0 or batch_size > x.shape[0]:
        raise ValueError(f"batch_size must be in 1..{x.shape[0]}, got {batch_size}")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    stop = x.shape[0] - (x.shape[0] % batch_size if drop_last else 0)
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield jnp.asarray(x[idx]), jnp.asarray(y[idx])
