r"""Theorem checks for the forward-only family (float64): PEPITA, DRTP/TPSGD, LLS.

* ``pepita_as_fa`` — PEPITA's first-layer update tends to the direct-feedback-alignment update with the feedback
  :math:`-(W_1F)^\top` as the modulation shrinks (Srinivasan et al. ICLR 2024): :math:`1-\cos` falls as
  :math:`s^2`; during training on digits its angle to backprop's update is reported.
* ``drtp_memory`` — DRTP and TPSGD need less training-step memory than backprop, and TPSGD's activation memory does
  not grow with depth (Lomnitz et al. 2022), from XLA's memory analysis of the compiled step.
* ``tpsgd_accuracy`` — on a shallow MLP, DRTP and TPSGD end within 5 points of backprop's test accuracy.
* ``lls_macs`` — LLS, LLS-M and LLS-MxM need fewer MACs per training step than backprop (XLA's cost analysis); the
  saving is compared with the backward pass's :math:`W_l^\top\delta_l` products less the local readouts.

Every check takes the component under test as an argument (learner factory, feedback formula), so a test can hand it
a broken one and see it fail. See ``theory/pepita.md``, ``theory/drtp.md`` and ``theory/lls.md``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..analysis import alignment_angle, bp_gradient, cosine_similarity
from ..analysis.costs import step_costs
from ..data import load
from ..learning import train
from ..models.base import Data
from ..networks import init_network, linear_layer
from ..rules import get_learner
from ..rules.feedback import FeedbackNetwork, dfa_learner
from ..rules.pepita import effective_feedback, pepita_learner
from .criteria import at_most, below, reported, within
from .registry import Verdict, register_check
from .. import draws

_KEY = jax.random.key(0)
#: the modulation strengths s of ``pepita_as_fa`` (F = s F_0)
_MODULATIONS = tuple(float(v) for v in np.logspace(-4, -1, 7))


def _problem(sizes, batch, seed):
    k_net, k_x, k_y, k_f = jax.random.split(jax.random.key(seed), 4)
    net = init_network(sizes, key=k_net, bias_scale=0.1, dtype=jnp.float64)
    x = draws.uniform(k_x, (batch, sizes[0]), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(k_y, (batch,), 0, sizes[-1]), sizes[-1], dtype=jnp.float64)
    return net, x, y, k_f


def _fa_first_layer(net, projection, x, y, feedback_fn, loss):
    """DFA's first-layer update with ``D_1 = feedback_fn(net, F^T)`` (deeper layers' feedback: zero, unused by W_1)."""
    d1 = feedback_fn(net, projection)
    rest = tuple(linear_layer(jnp.zeros((net.sizes[-1], n), d1.dtype), None) for n in net.sizes[2:-1])
    params = FeedbackNetwork(net, (linear_layer(d1, None), *rest))
    return dfa_learner(loss=loss).rule.update(params, (), Data(x, y), _KEY)[0].network.weights[0]


def _pepita_limit(sizes, batch, seeds, modulations, loss, learner_factory, feedback_fn):
    """``1 - cos(ΔW_1^PEPITA, ΔW_1^FA)`` per seed and modulation ``s``: ``F = s F_0`` (each rule's own ``init``, the
    same uniform draw scaled by ``s``); the update does not depend on ``s`` otherwise, so one compiled function
    (vmapped over the projections) serves every ``s``."""
    rules = [learner_factory(loss=loss, modulation=float(s)).rule for s in modulations]

    @jax.jit
    def deficits(net, projections, x, y):
        def one(projection):
            g = rules[0].update(net, projection, Data(x, y), _KEY)[0].weights[0]
            return 1.0 - cosine_similarity(g, _fa_first_layer(net, projection, x, y, feedback_fn, loss))

        return jax.vmap(one)(projections)

    out = []
    for seed in seeds:
        net, x, y, k_f = _problem(sizes, batch, seed)
        out.append(np.asarray(deficits(net, jnp.stack([r.init(k_f, net) for r in rules]), x, y)))
    return np.array(out)


def _pepita_training(hidden, steps, every, lr, modulation, loss, seed, learner_factory, feedback_fn):
    """Train PEPITA on digits (Adam, batches of 64); every ``every`` steps: angle of its first-layer update to BP's
    and to the effective-FA update, and angle(W_2, D_1) (FA's alignment of forward weights with the feedback)."""
    data = load("digits")
    n = data.x_train.shape[0] // 64
    x = jnp.asarray(data.x_train[: n * 64], jnp.float64).reshape(n, 64, -1)
    y = jnp.asarray(data.y_train[: n * 64], jnp.float64).reshape(n, 64, -1)
    rule = learner_factory(loss=loss, modulation=modulation).rule
    net = init_network((x.shape[-1], *hidden, y.shape[-1]), key=jax.random.key(seed), dtype=jnp.float64)
    projection = rule.init(jax.random.key(seed + 1), net)
    opt = optax.adam(lr)
    xb, yb = x[:4].reshape(256, -1), y[:4].reshape(256, -1)

    def measure(net):
        g = rule.update(net, projection, Data(xb, yb), _KEY)[0].weights[0]
        fa = _fa_first_layer(net, projection, xb, yb, feedback_fn, loss)
        return jnp.stack([alignment_angle(g, bp_gradient(net, xb, yb, loss).weights[0]), alignment_angle(g, fa),
                          alignment_angle(net.weights[1], feedback_fn(net, projection))])

    @jax.jit
    def chunk(net, opt_state, t0):
        def body(carry, t):
            net, opt_state = carry
            g = rule.update(net, projection, Data(x[t % n], y[t % n]), _KEY)[0]
            upd, opt_state = opt.update(g, opt_state, net)
            return (optax.apply_updates(net, upd), opt_state), None

        (net, opt_state), _ = jax.lax.scan(body, (net, opt_state), t0 + jnp.arange(every))
        return net, opt_state, measure(net)

    opt_state, rows = opt.init(net), [np.asarray(jax.jit(measure)(net))]
    for t0 in range(0, steps, every):
        net, opt_state, m = chunk(net, opt_state, t0)
        rows.append(np.asarray(m))
    accuracy = float(np.mean(np.asarray(net(jnp.asarray(data.x_test, jnp.float64))).argmax(-1) == data.y_test.argmax(-1)))
    return np.array(rows), np.arange(0, steps + 1, every), accuracy


@register_check(
    "pepita_as_fa",
    family="forward_only",
    statement="PEPITA's first-layer update tends to the DFA update with feedback -(W_1 F)^T as the modulation s -> 0: 1 - cos <= 1e-6 at the smallest s, falling as s^(2 +- 0.3); the update's angle to BP during digits training is reported",
    theory="theory/pepita.md",
    quick={},
    full={"seeds": tuple(range(5)), "steps": 1500, "lr": 3e-3, "hidden": (256,)},
)
def pepita_as_fa(
    *, sizes=(12, 16, 16, 5), batch=16, seeds=(0, 1, 2), modulations=_MODULATIONS, n_fit=4, loss="ce",
    limit_tol=1e-6, slope_tol=0.3, hidden=(32,), steps=150, every=25, lr=1e-2, train_modulation=0.05,
    learner_factory=pepita_learner, feedback_fn=effective_feedback,
):
    """``1 - cos`` between PEPITA's ΔW_1 and DFA's ΔW_1 (feedback ``feedback_fn``) over ``modulations``, worst seed;
    log-log slope over the ``n_fit`` smallest. The second-order remainder of :math:`\\varphi(a + W_1Fe)` and the
    :math:`Fe` in :math:`\\tilde x` are orthogonal to the limit in general, so :math:`1-\\cos \\propto s^2`."""
    s = np.asarray(modulations, float)
    deficit = _pepita_limit(sizes, batch, seeds, s, loss, learner_factory, feedback_fn)
    worst = deficit.max(axis=0)
    slope = np.polyfit(np.log(s[:n_fit]), np.log(np.maximum(deficit[:, :n_fit], 1e-300)).T, 1)[0]
    angles, step_axis, accuracy = _pepita_training(hidden, steps, every, lr, train_modulation, loss, seeds[0], learner_factory, feedback_fn)
    ds = xr.Dataset(
        {
            "one_minus_cos": (("seed", "modulation"), deficit),
            "slope": ("seed", slope),
            "angle_to_bp": ("step", angles[:, 0]),
            "angle_to_fa": ("step", angles[:, 1]),
            "angle_W2_D1": ("step", angles[:, 2]),
        },
        coords={"seed": list(seeds), "modulation": s, "step": step_axis},
        attrs={"train_modulation": train_modulation, "test_accuracy": accuracy, "n_fit": n_fit},
    )
    verdict = Verdict.from_criteria(
        one_minus_cos_at_smallest=at_most(worst[0], limit_tol),
        slope_worst_seed=within(slope[np.argmax(np.abs(slope - 2.0))], 2.0, slope_tol),
        angle_to_bp_start=reported(angles[0, 0]),
        angle_to_bp_end=reported(angles[-1, 0]),
        angle_W2_D1_start=reported(angles[0, 2]),
        angle_W2_D1_end=reported(angles[-1, 2]),
        digits_test_accuracy=reported(accuracy),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- drtp_memory


def _memory(learners, width, depths, batches, n_in=32, n_out=10):
    """XLA's temp and peak bytes of the compiled step per learner, depth and batch (:func:`step_costs`)."""
    temp = np.zeros((len(learners), len(depths), len(batches)))
    peak = np.zeros_like(temp)
    for i, name in enumerate(learners):
        for j, d in enumerate(depths):
            for k, b in enumerate(batches):
                c = step_costs(name, (n_in, *(width,) * d, n_out), b, time_repeats=0)
                temp[i, j, k], peak[i, j, k] = c["temp_bytes"], c["peak_bytes"]
    return temp, peak


@register_check(
    "drtp_memory",
    family="forward_only",
    statement="TPSGD (and DRTP) need less training-step memory than BP on the deepest net (XLA memory analysis), and TPSGD keeps <= 0.25 layer of activations per added layer beyond its parameter-sized gradients (BP keeps >= 1: every layer for the backward pass)",
    theory="theory/drtp.md",
    quick={},
    full={"learners": ("bp", "drtp", "tpsgd"), "depths": (2, 4, 8, 16), "width": 128, "batch": 1024},
)
def drtp_memory(*, learners=("bp", "tpsgd"), width=64, depths=(2, 6), batch=512, max_growth=0.25):
    """XLA's temporaries of the step (what it allocates beyond inputs and outputs) at a batch large enough that
    activations dominate them; their growth per added hidden layer, in units of one layer's activations
    (``batch × width × 8`` bytes: the check runs in float64), fitted over ``depths``. Every rule also allocates one
    parameter-sized gradient per added layer, ``width² × 8`` bytes ``= width / batch`` layer; the criterion is on the
    growth less that term (the activations kept per added layer). Peak = arguments + outputs + temporaries − aliased
    bytes."""
    temp, peak = _memory(learners, width, depths, (batch,))
    temp, peak = temp[..., 0], peak[..., 0]
    layer_bytes = batch * width * 8
    growth = np.polyfit(np.asarray(depths, float), temp.T / layer_bytes, 1)[0]
    activation_growth = growth - width / batch
    ratio = peak / peak[learners.index("bp")]
    ds = xr.Dataset(
        {
            "temp_bytes": (("learner", "depth"), temp),
            "peak_bytes": (("learner", "depth"), peak),
            "temp_layers": (("learner", "depth"), temp / layer_bytes),
            "peak_ratio_to_bp": (("learner", "depth"), ratio),
            "layers_per_added_layer": ("learner", growth),
            "activation_layers_per_added_layer": ("learner", activation_growth),
        },
        coords={"learner": list(learners), "depth": list(depths)},
        attrs={"width": width, "batch": batch, "layer_bytes": layer_bytes, "parameter_layers": width / batch,
               "source": "XLA memory_analysis of the compiled step"},
    )
    tp, bp = learners.index("tpsgd"), learners.index("bp")
    crit = {
        "tpsgd_peak_ratio_deepest": below(ratio[tp, -1], 1.0),
        "tpsgd_activation_layers_per_added_layer": at_most(activation_growth[tp], max_growth),
        "tpsgd_layers_per_added_layer": reported(growth[tp]),
        "bp_activation_layers_per_added_layer": reported(activation_growth[bp]),
        "tpsgd_peak_ratio_shallowest": reported(ratio[tp, 0]),
    }
    if "drtp" in learners:
        dr = learners.index("drtp")
        crit["drtp_peak_ratio_deepest"] = below(ratio[dr, -1], 1.0)
        crit["drtp_activation_layers_per_added_layer"] = at_most(activation_growth[dr], max_growth)
    return ds, Verdict.from_criteria(**crit)


# ----------------------------------------------------------------------------- tpsgd_accuracy


@register_check(
    "tpsgd_accuracy",
    family="forward_only",
    statement="On a shallow MLP (digits, one hidden layer), DRTP and TPSGD end within 5 points of BP's test accuracy (Lomnitz et al.: 'within 5% of BP')",
    theory="theory/drtp.md",
    quick={},
    full={"learners": ("bp", "drtp", "tpsgd"), "epochs": 30, "seeds": (0, 1, 2)},
)
def tpsgd_accuracy(*, learners=("bp", "tpsgd"), hidden=(64,), epochs=10, lr=1e-2, loss="mse", seeds=(0,), max_gap=0.05):
    """Train every learner with Adam at the same ``lr`` on the same network; gap = BP's accuracy − the rule's (mean over seeds)."""
    data = load("digits")
    acc = np.array([[float(train(get_learner(n, loss=loss), data, hidden=hidden, epochs=epochs, lr=lr, seed=s, progress=False)[1].test_accuracy[-1])
                     for s in seeds] for n in learners])
    gap = acc[0].mean() - acc.mean(axis=1)
    ds = xr.Dataset({"test_accuracy": (("learner", "seed"), acc), "gap_to_bp": ("learner", gap)},
                    coords={"learner": list(learners), "seed": list(seeds)}, attrs={"hidden": list(hidden), "epochs": epochs, "lr": lr})
    crit = {f"{n}_gap_to_bp": at_most(gap[i], max_gap) for i, n in enumerate(learners) if n != "bp"}
    verdict = Verdict.from_criteria(**crit, bp_accuracy=reported(acc[0].mean()))
    return ds, verdict


# ----------------------------------------------------------------------------- lls_macs


def predicted_saving(sizes, batch) -> float:
    r"""MACs LLS saves against BP, counted by hand: BP's :math:`W_l^\top\delta_l` for ``l = 2..L`` (``B n_l n_{l-1}``)
    less LLS's readouts :math:`B_l\hat z_l` and their gradients (``2 B C n_l`` per hidden layer)."""
    c = sizes[-1]
    backward = sum(batch * a * b for a, b in itertools.pairwise(sizes[1:]))
    readouts = sum(2 * batch * c * n for n in sizes[1:-1])
    return float(backward - readouts)


@register_check(
    "lls_macs",
    family="forward_only",
    statement="LLS, LLS-M and LLS-MxM need fewer MACs per training step than BP on every network (XLA cost analysis); the saving against the hand count (backward W^T delta products less the local readouts) is reported",
    theory="theory/lls.md",
    quick={},
    full={"learners": ("bp", "lls", "lls/m", "lls/mxm"), "networks": ((64, 128, 128, 10), (64, 256, 256, 256, 10), (784, 512, 512, 512, 512, 10)), "batch": 64},
)
def lls_macs(*, learners=("bp", "lls"), networks=((32, 128, 128, 128, 10),), batch=32):
    """MACs (flops/2) of the compiled step per learner and network; ratio to BP; measured vs predicted saving."""
    macs = np.array([[step_costs(n, sizes, batch, time_repeats=0)["macs"] for sizes in networks] for n in learners])
    bp = macs[learners.index("bp")]
    ratio = macs / bp
    predicted = np.array([predicted_saving(s, batch) for s in networks])
    saving_error = np.abs((bp - macs) - predicted) / bp
    names = ["-".join(map(str, s)) for s in networks]
    ds = xr.Dataset(
        {"macs": (("learner", "network"), macs), "ratio_to_bp": (("learner", "network"), ratio),
         "predicted_saving": ("network", predicted), "saving_error": (("learner", "network"), saving_error)},
        coords={"learner": list(learners), "network": names}, attrs={"batch": batch, "source": "XLA cost_analysis of the compiled step"},
    )
    local = [i for i, n in enumerate(learners) if n != "bp"]
    lls = learners.index("lls") if "lls" in learners else local[0]
    verdict = Verdict.from_criteria(
        ratio_worst=below(ratio[local].max(), 1.0),
        saving_error_worst=reported(saving_error[local].max()),
        **{f"lls_ratio_{k}": reported(ratio[lls, k]) for k in range(len(networks))},
    )
    return ds, verdict
