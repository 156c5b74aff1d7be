r"""Information-bottleneck Hebbian learning with working memory (Daruwalla & Lipasti, "Information bottleneck-based
Hebbian learning rule naturally ties working memory and synaptic updates", Front. Comput. Neurosci. 18, 2024).

Each hidden layer ``l`` minimises its own kernelised information bottleneck over a window of :math:`B` samples
(``capacity``; the paper's batch size), with no error travelling between layers:

.. math::  \ell_l = \mathrm{HSIC}(X, Z_l) - \gamma\,\mathrm{HSIC}(Y, Z_l), \qquad
           \mathrm{HSIC}(A, Z) = \frac{\operatorname{tr}(K_A H K_Z H)}{(B-1)^2} = \sum_{ij} M_{ij} K^Z_{ij},\quad
           M = \frac{H (K_X - \gamma K_Y) H}{(B-1)^2},

with Gaussian kernels :math:`K_{ij} = \exp(-\|a_i - a_j\|^2 / 2\sigma_a^2)`, :math:`\sigma_a^2 = \sigma^2 n_a`
(``sigma`` in units of the root dimension), and the centring matrix :math:`H = I - \mathbf{1}\mathbf{1}^\top/B`.
The gradient splits exactly into a **global layer modulator** times a **local Hebbian term** of each sample:

.. math::  \frac{\partial \ell_l}{\partial W_l} = \sum_i \big(m_i \odot \varphi'(u_i)\big)\, x_{i}^{\top}, \qquad
           m_i = \frac{\partial \ell_l}{\partial z_i} = -\frac{2}{\sigma_z^2}\sum_j M_{ij} K^Z_{ij}\,(z_i - z_j),

where :math:`u_i = W_l x_i + b_l`, :math:`z_i = \varphi(u_i)`: the post-synaptic gain :math:`\varphi'(u_i)` and the
pre-synaptic rate :math:`x_i` are local, the modulator :math:`m_i` (one number per post-synaptic neuron) needs the
kernel similarities of the sample to the others in the window — the *working memory*. Streaming, the current
sample :math:`t` is the last of the window of the last :math:`B` samples, held by the memory of
:mod:`dynlearn.models.hebbian.ib_memory` (the ideal shift register, or the rate reservoir); the weight change is
:math:`\Delta W_l = -\eta\,(m_t \odot \varphi'(u_t))\,x_t^\top`. The memory holds the inputs and labels
:math:`s = (x, y)`; the layer's responses :math:`z_j` to the remembered inputs are recomputed with the current weights.
The output layer (a readout) learns by its loss gradient on the detached last hidden layer.

Names: the paper's trade-off :math:`\gamma` (:math:`\beta` in Ma et al. 2020) is ``gamma``; :math:`B` is ``capacity``.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ...losses import get_loss
from ...models.base import Data
from ...networks import Network
from ...rules.base import LEARNERS, Learner, Rule
from .ib_memory import Reservoir, exact_windows, fit_readout, recall


def gaussian_kernel(a, sigma):
    """``K_ij = exp(-|a_i - a_j|^2 / (2 sigma^2 n_a))`` for rows of ``a`` (``(B, n_a)``)."""
    sq = jnp.sum((a[:, None, :] - a[None, :, :]) ** 2, axis=-1)
    return jnp.exp(-sq / (2.0 * sigma**2 * a.shape[-1]))


def _centre(k):
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def ib_objective(z, x, y, *, gamma, sigma):
    r""":math:`\ell = \mathrm{HSIC}(X, Z) - \gamma\,\mathrm{HSIC}(Y, Z)` of one window (autodiff reference)."""
    b = z.shape[0]
    kz = gaussian_kernel(z, sigma)
    return (jnp.sum(_centre(gaussian_kernel(x, sigma)) * kz) - gamma * jnp.sum(_centre(gaussian_kernel(y, sigma)) * kz)) / (b - 1) ** 2


def layer_modulator(z, x, y, *, gamma, sigma):
    r"""The modulators :math:`m_i = \partial\ell/\partial z_i` of every sample of a window, closed form (``(B, n_z)``)."""
    b, n_z = z.shape
    m = (_centre(gaussian_kernel(x, sigma)) - gamma * _centre(gaussian_kernel(y, sigma))) / (b - 1) ** 2
    c = m * gaussian_kernel(z, sigma)
    return -(2.0 / (sigma**2 * n_z)) * (jnp.sum(c, axis=1)[:, None] * z - c @ z)


def hebbian_term(m, u, x_prev, dphi):
    """The local three-factor update of one sample in descent sign: ``((m ⊙ φ'(u)) xᵀ, m ⊙ φ'(u))``."""
    post = m * dphi(u)
    return jnp.outer(post, x_prev), post


def _dphi(phi):
    return lambda u: jax.jvp(phi, (u,), (jnp.ones_like(u),))[1]


def window_gradients(net: Network, windows_x, windows_y, *, gamma, sigma):
    """Per hidden layer, the summed three-factor updates of the current (last) sample of each window.

    ``windows_x``: ``(T, B, n_0)`` remembered inputs (current sample last); the layer responses are recomputed.
    Returns ``[(dW_l, db_l)]`` for ``l = 1..L-1`` (descent sign, averaged over ``T``) and the modulator norms.
    """
    dphi = _dphi(net.phi)

    def one(wx, wy):
        h, out = wx, []
        for l in range(1, net.depth):
            u = net.apply(l, h)
            z = net.phi(u)
            m = layer_modulator(z, wx, wy, gamma=gamma, sigma=sigma)[-1]
            out.append(hebbian_term(m, u[-1], h[-1], dphi) + (jnp.sum(m * m),))
            h = jax.lax.stop_gradient(z)
        return out

    per = jax.vmap(one)(windows_x, windows_y)
    return [(dw.mean(0), db.mean(0)) for dw, db, _ in per], [jnp.sqrt(n.mean()) for _, _, n in per]


class IBHebbian(Rule):
    """Streaming IB-Hebbian rule (see the module docstring) with an exact or a reservoir working memory."""

    loss: Callable = eqx.field(static=True)
    gamma: float = eqx.field(static=True, default=50.0)
    sigma: float = eqx.field(static=True, default=0.5)
    capacity: int = eqx.field(static=True, default=8)
    memory: str = eqx.field(static=True, default="exact")
    reservoir_size: int = eqx.field(static=True, default=0)

    def init(self, key, params: Network):
        n_s = params.sizes[0] + params.sizes[-1]
        dtype = params.weights[0].dtype
        if self.memory == "exact":
            return {"buffer": jnp.zeros((self.capacity - 1, n_s), dtype)}
        k_res, k_fit = jax.random.split(key)
        res = Reservoir.random(self.reservoir_size, n_s, key=k_res, dtype=dtype)
        phi, gam = res.flow_map()
        readout = fit_readout(phi, gam, self.capacity, key=k_fit, clear=False)
        return {"r": jnp.zeros(self.reservoir_size, dtype), "phi": phi, "gam": gam, "readout": readout}

    def windows(self, rule_state, stream):
        """The remembered windows for each sample of ``stream`` and the new memory state."""
        if self.memory == "exact":
            full = jnp.concatenate([rule_state["buffer"], stream])
            return exact_windows(full, self.capacity), {"buffer": full[-(self.capacity - 1):]}
        from .ib_memory import run_reservoir

        r, states = run_reservoir(rule_state["phi"], rule_state["gam"], stream, rule_state["r"])
        wins = recall(rule_state["readout"], states, self.capacity).at[:, -1].set(stream)  # the current sample is seen, not recalled
        return wins, {**rule_state, "r": r}

    def update(self, params: Network, rule_state, batch: Data, key):
        x, y = batch.x, batch.y
        n0 = x.shape[-1]
        wins, rule_state = self.windows(rule_state, jnp.concatenate([x, y], axis=-1))
        hidden, mods = window_gradients(params, wins[..., :n0], wins[..., n0:], gamma=self.gamma, sigma=self.sigma)
        acts = params.forward(x)

        def readout_loss(net):
            out = net.predict_layer(net.depth, jax.lax.stop_gradient(acts[-2]))
            return self.loss(out, y), out

        grads, out = eqx.filter_grad(readout_loss, has_aux=True)(params)
        weights = [dw for dw, _ in hidden] + [grads.weights[-1]]
        biases = [db for _, db in hidden] + [grads.biases[-1]]
        metrics = {"loss": self.loss(out, y) / x.shape[0], **{f"modulator_{l}": v for l, v in enumerate(mods, start=1)}}
        return params.with_matrices(weights, biases), rule_state, metrics


@LEARNERS.register("ib_hebbian")
def ib_hebbian_learner(*, activation: str = "tanh", gamma: float = 50.0, sigma: float = 0.5, capacity: int = 8,
                       memory: str = "exact", reservoir_size: int | None = None, loss: str = "ce") -> Learner:
    """IB-Hebbian (Daruwalla & Lipasti 2024): layer-wise HSIC bottleneck as modulator × local Hebbian term, with an
    exact or reservoir working memory of ``capacity`` samples; the readout learns by its loss gradient."""
    if not (isinstance(capacity, int) and not isinstance(capacity, bool) and capacity >= 2):
        raise ValueError(f"capacity must be an integer >= 2 (the working-memory window), got {capacity!r}")
    if memory not in ("exact", "reservoir"):
        raise ValueError(f"memory must be 'exact' or 'reservoir', got {memory!r}")
    for name, v in (("gamma", gamma), ("sigma", sigma)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    if memory == "reservoir":
        if not (isinstance(reservoir_size, int) and reservoir_size >= 1):
            raise ValueError(f"reservoir_size must be a positive integer with memory='reservoir', got {reservoir_size!r}")
    elif reservoir_size is not None:
        raise ValueError("reservoir_size is used only with memory='reservoir'")
    rule = IBHebbian(get_loss(loss), float(gamma), float(sigma), capacity, memory, reservoir_size or 0)
    return Learner(
        name="ib_hebbian",
        rule=rule,
        description="information-bottleneck Hebbian rule: HSIC modulator from a working memory times a local Hebbian term (Daruwalla & Lipasti 2024)",
        defaults={"activation": activation, "gamma": gamma, "sigma": sigma, "capacity": capacity, "memory": memory,
                  "reservoir_size": reservoir_size, "loss": loss, "lr": 1e-2},
    )
