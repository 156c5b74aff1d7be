r"""The one mechanism of the feedback-alignment family: a layer whose reverse pass uses another layer's weights.

:func:`feedback_call` evaluates :math:`f_W(h)` forward; in reverse mode it sends the cotangent :math:`\delta` to the
input through the *feedback* layer :math:`f_B` (for a linear layer, :math:`B^\top\delta` in place of
:math:`W^\top\delta`), to :math:`W` the usual :math:`\partial f_W/\partial W^\top \delta` (:math:`\delta h^\top`), and to
the feedback layer the same update as :math:`W` (the Kolen–Pollack update; rules that do not learn their feedback
ignore it). The feedback layer has the structure of the forward one — for a Linear layer ``B`` has the shape of
``W`` — so the mechanism works for any equinox layer: dense, convolutional, or a composite of pooling and weights.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx


@eqx.filter_custom_vjp
def feedback_call(operands, apply: Callable):
    """``apply(layer, h)`` forward; reverse: ``h ← VJP of apply(feedback, ·)``, ``layer, feedback ← VJP wrt layer``.

    ``operands = (layer, feedback, h)``; ``apply(layer, h)`` maps a layer over the batch (e.g. :meth:`Network.apply`).
    """
    layer, feedback, h = operands
    return apply(layer, h)


@feedback_call.def_fwd
def _fwd(perturbed, operands, apply):
    layer, feedback, h = operands
    return apply(layer, h), None


@feedback_call.def_bwd
def _bwd(residuals, g, perturbed, operands, apply):
    layer, feedback, h = operands
    _, vjp_layer = eqx.filter_vjp(lambda lay: apply(lay, h), layer)
    (g_layer,) = vjp_layer(g)
    # the feedback layer's own parameter VJP: for a Linear layer δ hᵀ, the same as W's (XLA shares the work)
    _, vjp_fb = eqx.filter_vjp(lambda fb, v: apply(fb, v), feedback, h)
    g_fb, g_h = vjp_fb(g)
    return g_layer, g_fb, g_h
