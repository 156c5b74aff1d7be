r"""Direct random target projection (DRTP; Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892).

Forward-only learning: no error travels back. Each hidden layer :math:`l < L` learns from a fixed random projection of
the *target* — the label stands in for the (unknown, at update time) sign of the output error — and only the output
layer sees the error:

.. math::  \delta_l = -(B_l\, y) \odot \varphi'(a_l) \quad (l < L), \qquad \delta_L = \partial L/\partial a_L, \qquad
           \Delta\theta_l \propto \frac{\partial a_l}{\partial\theta_l}^{\!\top} \delta_l ,

where :math:`a_l = f_l(\varphi_{l-1}(a_{l-1}))` is layer ``l``'s pre-activation and :math:`B_l` is a fixed random
matrix from the output space to layer ``l`` (Gaussian, variance :math:`1/n_L`). The minus sign makes :math:`-B_l y`
play the role of :math:`B_l e` in direct feedback alignment when the outputs are small (:math:`e = \hat y - y \approx -y`);
because :math:`B_l` is symmetric in distribution, the sign convention does not change what is learnable.

The fixed projections are the rule's state (drawn in :meth:`DirectRandomTargetProjection.init`), not trained
parameters. The update works on any :class:`dynlearn.Network`: each layer's input is detached, so every layer's
update is local, and the layer may be dense, convolutional or a composite.

:func:`local_gradients` is what every forward-only rule of dynlearn shares (DRTP, TPSGD, PEPITA, LLS): given a signal
:math:`\delta_l` at each layer's pre-activation and each layer's (detached) input, it returns
:math:`\partial a_l/\partial\theta_l^{\top}\delta_l` for every layer at once, with no path between layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .. import draws


def local_gradients(net: Network, inputs: Sequence[jax.Array], signals: Sequence[jax.Array]) -> Network:
    r"""``∂/∂θ Σ_l ⟨δ_l, f_l(φ_{l-1}(x_{l-1}))⟩`` with ``x_{l-1} = inputs[l-1]`` and ``δ_l = signals[l-1]`` held fixed.

    For a Linear layer this is :math:`g_{W_l} = \delta_l^\top \varphi_{l-1}(x_{l-1})`, :math:`g_{b_l} = \sum \delta_l`;
    for any other layer, the vector-Jacobian product of the layer at its input. Nothing flows between layers.
    """
    inputs = [jax.lax.stop_gradient(h) for h in inputs]
    signals = [jax.lax.stop_gradient(s) for s in signals]

    def surrogate(n):
        return sum(jnp.sum(s * n.predict_layer(l, h)) for l, (h, s) in enumerate(zip(inputs, signals), start=1))

    return eqx.filter_grad(surrogate)(net)


def layer_gradient(net: Network, l: int, h: jax.Array, signal: jax.Array):
    r"""Layer ``l``'s part of :func:`local_gradients`: the gradient of :math:`\langle\delta_l, f_l(\varphi_{l-1}(h))\rangle`
    with respect to layer ``l`` alone (an equinox module of the layer's structure)."""
    h, signal = jax.lax.stop_gradient(h), jax.lax.stop_gradient(signal)
    pre = net.presynaptic(l, h)
    return eqx.filter_grad(lambda layer: jnp.sum(signal * net.apply(l, pre, layer)))(net.layers[l - 1])


def output_error(loss: Callable, out: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(L(out, y), ∂L/∂out)``: the loss (summed over the batch) and the output error ``e`` of every sample."""
    return jax.value_and_grad(loss)(out, y)


def phi_prime(net: Network, a: jax.Array) -> jax.Array:
    """:math:`\\varphi'(a)` elementwise (forward-mode: one JVP with a vector of ones)."""
    return jax.jvp(net.phi, (a,), (jnp.ones_like(a),))[1]


def project_target(y: jax.Array, projection: jax.Array, batch_axes: int) -> jax.Array:
    """:math:`B_l\\,y` for every sample: ``y`` (batch..., n_L) against ``projection`` (n_L, *shape_l)."""
    return jnp.tensordot(y, projection, axes=(list(range(batch_axes, y.ndim)), [0]))


def in_turn(y: jax.Array, h: jax.Array, batch_axes: int) -> jax.Array:
    """``y`` unchanged in value, made to depend on layer ``l``'s input ``h`` (``y + 0 · h[..., 0]``).

    The projections :math:`B_l y` depend on the target alone, so a compiler may compute all of them before the first
    layer and keep them live through the whole pass (XLA's CPU scheduler does); tied to ``h``, each is computed when
    its layer runs, as on a chip that updates a layer as soon as its input arrives. Costs one add per target entry.
    """
    first = h.reshape(h.shape[:batch_axes] + (-1,))[..., :1]
    return y + 0.0 * first


def target_projections(key, net: Network) -> tuple[jax.Array, ...]:
    """One fixed projection per hidden layer, shape ``(n_out, *shape_l)``, entries N(0, 1/n_out)."""
    n_out = net.sizes[-1]
    keys = jax.random.split(key, max(net.depth - 1, 1))
    dtype = next((a.dtype for a in jax.tree.leaves(net) if eqx.is_inexact_array(a)), jnp.float32)
    return tuple(draws.normal(k, (n_out, *shape), dtype) / math.sqrt(n_out) for k, shape in zip(keys, net.shapes[1:-1]))


class DirectRandomTargetProjection(Rule):
    """DRTP (see the module docstring); ``loss`` trains the output layer. Subclasses change :meth:`hidden_signal`."""

    loss: Callable = eqx.field(static=True)

    def init(self, key, params: Network) -> tuple[jax.Array, ...]:
        """One fixed projection per hidden layer, shape ``(n_out, *shape_l)``, entries N(0, 1/n_out)."""
        return target_projections(key, params)

    def hidden_signal(self, net: Network, a: jax.Array, target: jax.Array) -> jax.Array:
        r"""DRTP's :math:`\delta_l = -(B_l y)\odot\varphi'(a_l)` from the projected target ``target`` = :math:`B_l y`."""
        return -target * phi_prime(net, a)

    def update(self, params: Network, rule_state, batch: Data, key):
        """Layer by layer (:meth:`layerwise_update`), every run of equal hidden layers inside one ``lax.scan``."""
        return self.layerwise_update(params, rule_state, batch, stack=True)

    def layerwise_update(self, params: Network, rule_state, batch: Data, *, stack: bool = True):
        """Layer ``l``'s signal and update are computed from its input and the target alone, so a layer's activations
        are dead once the next layer has its input (see :func:`in_turn`). With ``stack``, each run of two or more
        hidden layers of one structure (:func:`equal_runs`) is one ``lax.scan`` whose carry is a single layer's
        activation (:meth:`_scan_run`): the compiled step cannot keep more than one of them, whatever the depth.
        ``stack=False`` unrolls every layer; both give the same update."""
        x, y = batch.x, batch.y
        batch_axes = x.ndim - len(params.shapes[0])
        runs = dict(equal_runs(params)) if stack else {}
        h, layer_grads, value, l = x, [], None, 1
        while l <= params.depth:
            if l in runs:
                h, grads = self._scan_run(params, rule_state, l, runs[l], h, y, batch_axes)
                layer_grads.extend(grads)
                l = runs[l]
                continue
            a = params.predict_layer(l, h)
            if l < params.depth:
                signal = self.hidden_signal(params, a, project_target(in_turn(y, h, batch_axes), rule_state[l - 1], batch_axes))
            else:
                value, signal = output_error(self.loss, a, y)
            layer_grads.append(layer_gradient(params, l, h, signal))
            h, l = a, l + 1
        grads = Network(tuple(layer_grads), params.activation, shapes=params.shapes)
        return grads, rule_state, {"loss": value / x.shape[0]}

    def _scan_run(self, net: Network, projections, start: int, stop: int, h, y, batch_axes: int):
        """Hidden layers ``start..stop-1`` (one structure) as a ``lax.scan`` over their stacked parameters and
        projections; carry: the previous layer's pre-activation. Returns the last one and the layers' gradients."""
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *net.layers[start - 1 : stop - 1])
        ps = jnp.stack(projections[start - 1 : stop - 1])

        def body(h, xs):
            layer, p = xs
            pre = net.presynaptic(start, jax.lax.stop_gradient(h))
            a = net.apply(start, pre, layer)
            signal = jax.lax.stop_gradient(self.hidden_signal(net, a, project_target(y, p, batch_axes)))
            return a, eqx.filter_grad(lambda lay: jnp.sum(signal * net.apply(start, pre, lay)))(layer)

        h, grads = jax.lax.scan(body, h, (stacked, ps))
        return h, [jax.tree.map(lambda g, i=i: g[i], grads) for i in range(stop - start)]


def equal_runs(net: Network) -> list[tuple[int, int]]:
    """Maximal runs ``[start, stop)`` of two or more hidden layers (``2 <= l < L``) with one tree structure, the same
    parameter shapes and the same input and output shapes, whose leaves are all arrays (so they stack)."""

    def signature(l):
        layer = net.layers[l - 1]
        leaves = jax.tree.leaves(layer)
        if not leaves or not all(eqx.is_array(a) for a in leaves):
            return None
        return jax.tree.structure(layer), tuple((a.shape, a.dtype) for a in leaves), net.shapes[l - 1], net.shapes[l]

    runs, l = [], 2
    while l < net.depth:
        sig, stop = signature(l), l + 1
        while sig is not None and stop < net.depth and signature(stop) == sig:
            stop += 1
        if stop - l >= 2:
            runs.append((l, stop))
        l = stop
    return runs


@LEARNERS.register("drtp")
def drtp_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """DRTP: hidden layers learn from fixed random projections of the target; forward only."""
    return Learner(
        name="drtp",
        rule=DirectRandomTargetProjection(get_loss(loss)),
        description="direct random target projection: fixed random projections of the label train hidden layers, no backward pass (Frenkel et al. 2021)",
        defaults={"activation": activation, "loss": loss, "lr": 1e-2},
    )
