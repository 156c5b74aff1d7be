r"""Working memory for the information-bottleneck Hebbian rule (Daruwalla & Lipasti, Front. Comput. Neurosci. 2024).

The layer modulator of :mod:`dynlearn.models.hebbian.ib_hebbian` needs the last ``capacity`` samples. Two memories:

* :class:`Reservoir` — an auxiliary linear rate network, the ODE
  :math:`\tau\,\dot r = -r + W_\mathrm{rec}\, r + W_\mathrm{in}\, s(t)`, driven by the sample stream :math:`s(t)`
  (each sample held for one presentation ``interval``). Over one interval the flow is exact,
  :math:`r \mapsto \Phi r + \Gamma s` with :math:`\Phi = e^{A T}`, :math:`\Gamma = A^{-1}(e^{AT} - I) W_\mathrm{in}`,
  :math:`A = (W_\mathrm{rec} - I)/\tau` (the zero-order-hold flow of a linear ODE, :meth:`Reservoir.flow_map`; the
  tests compare it with :func:`dynlearn.dynamics.simulate`). A linear readout :math:`D` recalls the window,
  :math:`D r_t \approx (s_t, s_{t-1}, \dots, s_{t-B+1})`; it is fitted once by least squares on a random stream,
  independently of the data set (:func:`fit_readout`), as the paper trains its auxiliary network a priori.
  With ``clear=True`` the reservoir starts each window from rest — the *ideal memory*: with
  :math:`N \ge B\,D_s` units the recall is exact to rounding. Running continuously, older samples interfere.
* :func:`exact_windows` — a shift register: the true window (the batch modulator's input).

Symbols: the paper's batch size (the number of samples the modulator averages over) is ``capacity`` (:math:`B`);
the reservoir size is ``reservoir_size`` (:math:`N`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from ... import draws


class Reservoir(eqx.Module):
    """A linear rate reservoir: ``tau dr/dt = -r + w_rec r + w_in s`` (see the module docstring)."""

    w_rec: jax.Array
    w_in: jax.Array
    tau: float = eqx.field(static=True, default=1.0)
    interval: float = eqx.field(static=True, default=1.0)

    @classmethod
    def random(cls, size: int, n_in: int, *, key, leak: float = 1.0, rotation: float = 1.0, dtype=jnp.float64, tau=1.0, interval=1.0):
        r"""``w_rec = (1 - leak) I + rotation · S`` with :math:`S` a random skew-symmetric matrix of unit spectral radius:
        the effective dynamics :math:`\tau\dot r = (\mathrm{rotation}\,S - \mathrm{leak}\,I)\, r + W_\mathrm{in} s`
        rotate the stored samples into distinct directions and forget them at rate ``leak``; ``w_in`` ~ N(0, 1/n_in)."""
        k1, k2 = jax.random.split(key)
        g = draws.normal(k1, (size, size), dtype)
        w_in = draws.normal(k2, (size, n_in), dtype) / jnp.sqrt(n_in)
        return cls.from_draws(g, w_in, size, leak=leak, rotation=rotation, tau=tau, interval=interval)

    @classmethod
    def from_draws(cls, g, w_in, size, *, leak: float = 1.0, rotation: float = 1.0, tau=1.0, interval=1.0):
        """The reservoir of :meth:`random` from its Gaussian draws ``g`` (``(n, n)``) and ``w_in`` (``(n, n_in)``),
        using the leading ``size`` units only (``size`` may be traced): the others get no input and no recurrence
        and stay at rest, so reservoirs of every size share one array shape (and a sub-block of a Gaussian draw is a
        Gaussian draw)."""
        n = g.shape[0]
        active = (jnp.arange(n) < size).astype(g.dtype)
        mask = active[:, None] * active[None, :]
        skew = (g - g.T) * mask
        radius = jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(skew.T @ skew)))
        w_rec = (1.0 - leak) * jnp.diag(active) + rotation * skew / jnp.maximum(radius, 1e-30)
        return cls(w_rec, w_in * active[:, None], tau, interval)

    def field(self, t, r, s):
        """The reservoir ODE's right-hand side for a constant input ``s`` (for :func:`dynlearn.dynamics.simulate`)."""
        return (-r + self.w_rec @ r + self.w_in @ s) / self.tau

    def flow_map(self):
        r""":math:`(\Phi, \Gamma)`: one interval of the ODE with a held input, from the exponential of the augmented
        matrix :math:`\begin{pmatrix}A & W_\mathrm{in}/\tau\\ 0 & 0\end{pmatrix}T`."""
        n, m = self.w_in.shape
        a = (self.w_rec - jnp.eye(n, dtype=self.w_rec.dtype)) / self.tau
        aug = jnp.zeros((n + m, n + m), a.dtype).at[:n, :n].set(a).at[:n, n:].set(self.w_in / self.tau)
        e = jax.scipy.linalg.expm(aug * self.interval)
        return e[:n, :n], e[:n, n:]


def run_reservoir(phi, gam, stream, r0=None):
    """Reservoir states after each sample of ``stream`` (``(T, D_s)``): ``r_t = Φ r_{t-1} + Γ s_t``."""
    r0 = jnp.zeros(phi.shape[0], phi.dtype) if r0 is None else r0

    def step(r, s):
        r = phi @ r + gam @ s
        return r, r

    return jax.lax.scan(step, r0, stream)


def exact_windows(stream, capacity):
    """Windows ``(T - B + 1, B, D_s)``: row ``t`` holds ``s_{t}, ..., s_{t+B-1}`` (oldest first, current last)."""
    t = stream.shape[0] - capacity + 1
    idx = jnp.arange(t)[:, None] + jnp.arange(capacity)[None, :]
    return stream[idx]


def cleared_states(phi, gam, windows):
    """The reservoir state at the end of each window when it starts the window from rest (the ideal memory)."""
    return jax.vmap(lambda w: run_reservoir(phi, gam, w)[0])(windows)


def fit_readout(phi, gam, capacity: int, *, key, n_fit: int | None = None, clear: bool = True):
    r"""Least-squares readout :math:`D` with :math:`D r_t \approx` the window ending at ``t`` (oldest first, flattened),
    fitted on a random N(0, 1) stream (data-independent). ``clear``: the reservoir starts every window from rest."""
    n, d_s = gam.shape
    n_fit = n_fit or 4 * max(n, capacity * d_s)
    stream = draws.normal(key, (n_fit + capacity - 1, d_s), phi.dtype)
    wins = exact_windows(stream, capacity)
    if clear:
        states = cleared_states(phi, gam, wins)
    else:
        states = run_reservoir(phi, gam, stream)[1][capacity - 1:]
    targets = wins.reshape(wins.shape[0], -1)
    return jnp.linalg.lstsq(states, targets)[0].T  # (B * D_s, N), minimum-norm least squares


def recall(readout, states, capacity):
    """Recalled windows ``(T, B, D_s)`` from reservoir states ``(T, N)``."""
    out = states @ readout.T
    return out.reshape(states.shape[0], capacity, -1)
