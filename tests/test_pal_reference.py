"""PAL in the authors' Fig. 3a–c setting: the logistic output with its gain, the rule's lag, and the check's twins."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.models.pal import PAL, REFERENCE_LAG, REFERENCE_OUTPUT, init_pal, pal_state
from dynlearn.models.pal_simulation import simulate_pal
from dynlearn.theorems import run_check
from dynlearn.theorems.pal_reference import REFERENCE_ANGLES, epoch_orders

from test_pal import SignFlippedPAL

SIZES = (3, 4, 2)


def _state(model, key=0):
    with jax.enable_x64(True):
        return init_pal(SIZES, key=jax.random.key(key), model=model)


def test_reference_output_is_a_logistic_rate_with_the_basal_gain():
    with jax.enable_x64(True):
        model = PAL(**REFERENCE_OUTPUT)
        y = _state(model)
        x = jnp.asarray([0.3, -0.2, 0.9])
        net = y.network
        hidden = 1.0 / (1.0 + jnp.exp(-model.basal_gain * (net.weights[0] @ x + net.biases[0])))
        expected = 1.0 / (1.0 + jnp.exp(-(0.1 / 0.13) * (net.weights[1] @ hidden + net.biases[1])))
        np.testing.assert_allclose(model.predict(net, x), expected, rtol=1e-13)
        # at rest on x, the rate the vector field sends out of the output layer is the same function
        settled = pal_state(model, net, y.feedback, x)
        np.testing.assert_allclose(model.layers(settled, x)[2][-1], expected, rtol=1e-12)


def test_output_error_is_minus_the_nudged_loss_gradient():
    """e_N = -beta dL/dv_N for L = 1/2 |y - rho_N|^2, with and without the rate output (independent: autodiff of predict)."""
    with jax.enable_x64(True):
        x, target, beta = jnp.asarray([0.3, -0.2, 0.9]), jnp.asarray([0.2, 0.7]), 0.5
        for opts in ({}, REFERENCE_OUTPUT, dict(output_gain=0.4)):
            model = PAL(**opts)
            y = _state(model, key=3)
            y = pal_state(model, y.network, y.feedback, x)
            _, uh, _ = model.layers(y, x)
            e_out = model.errors(y, uh, target, beta)[-1]

            def loss(b_out):
                net = y.network.with_matrices(y.network.weights, y.network.biases[:-1] + (b_out,))
                return 0.5 * jnp.sum((target - model.predict(net, x)) ** 2)

            np.testing.assert_allclose(e_out, -beta * jax.grad(loss)(y.network.biases[-1]), rtol=1e-10, atol=1e-14)


def test_rule_lag_is_an_exact_delay_of_k_euler_steps():
    """Euler steps of dt = rule_lag / k through the lag chain return the high-passed rate of k steps before."""
    with jax.enable_x64(True):
        model = PAL(**REFERENCE_LAG)
        k = REFERENCE_LAG["rule_lag_stages"]
        dt = REFERENCE_LAG["rule_lag"] / k
        y = _state(model)
        seq = jax.random.normal(jax.random.key(1), (12, SIZES[-1]))
        out = []
        for r in seq:
            pre, d = model.lagged(y, [r])
            out.append(pre[0])
            y = eqx.tree_at(lambda s: s.rlag, y, tuple(z + dt * dz for z, dz in zip(y.rlag, d)))
        np.testing.assert_allclose(jnp.stack(out[k:]), seq[:-k], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(jnp.stack(out[:k]), 0.0)


def test_rule_lag_options_are_checked():
    with pytest.raises(ValueError, match="rule_lag must be positive"):
        PAL(rule_lag=0.0, rule_lag_stages=4)
    with pytest.raises(ValueError, match="rule_lag_stages"):
        PAL(rule_lag_stages=-1)
    with jax.enable_x64(True):
        model = PAL(**REFERENCE_LAG)
        with pytest.raises(ValueError, match="stage of the rule's lag"):
            simulate_pal(model, _state(model), jnp.zeros((2, SIZES[0])), key=jax.random.key(0), dt=0.02, t_pres=0.1)


def test_epoch_orders_are_permutations_of_the_pattern_set():
    orders = epoch_orders(7, 3, (0, 1))
    assert orders.shape == (2, 21)
    for seed_order in orders:
        for epoch in seed_order.reshape(3, 7):
            assert sorted(epoch) == list(range(7))
    assert not np.array_equal(orders[0], orders[1])


# ----------------------------------------------------------------------------- the check and its twins

#: 2 seeds, 1 s: the criteria at 1 s only (about 15 s per run); the quick configuration (4 seeds, 2.5 s) runs in the main job
SHORT = dict(seeds=(0, 1), t_end=1000.0)


def test_without_the_lag_the_first_second_aligns_too_fast():
    """Must fail: pairing the noise with the rate it causes at once makes B2 and B3 align faster than the data."""
    r = run_check("pal_reference_fig3", reference_lag=False, **SHORT)
    assert not r.passed
    assert {"B2_at_1s", "B3_at_1s"} <= set(r.verdict.failed), r.verdict.summary()
    means = {f"B{i}_at_1s": m for i, m in enumerate(REFERENCE_ANGLES[1.0][0], start=1)}
    assert all(r.verdict.measured[c] < means[c] for c in ("B2_at_1s", "B3_at_1s"))


@pytest.mark.slow
def test_reference_setting_matches_the_data_quick():
    r = run_check("pal_reference_fig3")
    assert r.passed, r.verdict.summary()


@pytest.mark.slow
def test_reference_check_fails_with_a_sign_error():
    """Must fail, every criterion: B aligns with -W^T."""
    r = run_check("pal_reference_fig3", model_cls=SignFlippedPAL, **SHORT)
    assert set(r.verdict.failed) == {"B1_at_1s", "B2_at_1s", "B3_at_1s"}, r.verdict.summary()


@pytest.mark.slow
def test_reference_check_fails_with_a_linear_output():
    """Must fail: the linear output of unit gain passes ~5x more of the noise to B3's presynaptic rate."""
    r = run_check("pal_reference_fig3", reference_output=False, **SHORT)
    assert "B3_at_1s" in r.verdict.failed, r.verdict.summary()  # 25 deg at 1 s in the full run, against 70.9 +- 4.2
