"""Focused tests of library code paths that the theorem checks only reach through their own re-implementations:
the comparison and reference functions of :mod:`dynlearn.analysis`, the core numerics of :mod:`dynlearn.dynamics`,
and the verdict of :mod:`dynlearn.theorems`. Each compares the library's function with an independent formula on a
tiny case (numpy, written out here), so that a one-line defect (a mutant) fails a test. They are also the fast test
subset of ``scripts/mutation.sh`` (see README, "Mutation testing"): the whole file runs in seconds.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.analysis import bp_deltas, bp_gradient, compare_per_layer, cosine_similarity, loglog_slope, relative_error
from dynlearn.analysis.fixed_points import energy_increase, is_stable, spectrum
from dynlearn.analysis.gradients import layer_weights
from dynlearn.config import DEFAULT
from dynlearn.dynamics import CONVERGED, DIVERGED, all_finite, max_norm, relax
from dynlearn.networks import init_network
from dynlearn.theorems import Verdict
from dynlearn.theorems.criteria import above, at_least, at_most, below, between, finite, is_reported, reported, within


@pytest.fixture(scope="module")
def tiny():
    """A 3-4-2 tanh network with biases, a batch of 5, as numpy arrays too."""
    net = init_network((3, 4, 2), key=jax.random.key(0), activation="tanh", bias_scale=0.3, dtype=jnp.float64)
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 3)))
    y = np.asarray(jax.random.normal(jax.random.key(2), (5, 2)))
    W = [np.asarray(w) for w in net.weights]
    b = [np.asarray(v) for v in net.biases]
    return net, x, y, W, b


def _numpy_backprop(x, y, W, b):
    """MSE loss 0.5 sum (out - y)^2 over the batch: forward pass, deltas and gradients written out."""
    a1 = x @ W[0].T + b[0]
    h1 = np.tanh(a1)
    out = h1 @ W[1].T + b[1]
    d2 = out - y
    d1 = (1 - h1**2) * (d2 @ W[1])
    return [d1, d2], [d1.T @ x, d2.T @ h1], [d1.sum(0), d2.sum(0)]


# ----------------------------------------------------------------------------- analysis.gradients


def test_bp_gradient_and_deltas_match_written_out_backprop(tiny):
    net, x, y, W, b = tiny
    deltas, gw, gb = _numpy_backprop(x, y, W, b)
    g = bp_gradient(net, jnp.asarray(x), jnp.asarray(y))
    for l in range(2):
        np.testing.assert_allclose(g.weights[l], gw[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g.biases[l], gb[l], rtol=1e-12, atol=1e-14)  # bias terms too
    d = bp_deltas(net, jnp.asarray(x), jnp.asarray(y))
    assert len(d) == 2
    for l in range(2):
        np.testing.assert_allclose(d[l], deltas[l], rtol=1e-12, atol=1e-14)


def test_bp_gradient_uses_the_named_loss(tiny):
    net, x, y, _, _ = tiny
    from dynlearn.losses import get_loss

    for name in ("mse", "ce"):
        loss = get_loss(name)
        want = jax.grad(lambda w: loss(net.with_matrices((w, net.weights[1]), net.biases)(jnp.asarray(x)), jnp.asarray(y)))(net.weights[0])
        np.testing.assert_allclose(bp_gradient(net, jnp.asarray(x), jnp.asarray(y), name).weights[0], want, rtol=1e-12)
    d_ce = bp_deltas(net, jnp.asarray(x), jnp.asarray(y), "ce")[-1]
    assert not np.allclose(d_ce, bp_deltas(net, jnp.asarray(x), jnp.asarray(y))[-1])


def test_cosine_similarity_of_arrays_and_trees():
    a, b = np.array([1.0, 2.0, -2.0]), np.array([3.0, 0.0, 4.0])
    want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert float(cosine_similarity(a, b)) == pytest.approx(want, rel=1e-14)
    assert float(cosine_similarity(b, a)) == pytest.approx(want, rel=1e-14)
    assert float(cosine_similarity(a, -2.5 * a)) == pytest.approx(-1.0, rel=1e-14)
    # a tree is flattened and concatenated (leaves of different shapes), not compared leaf by leaf
    ta, tb = (a[:1], a[1:].reshape(2, 1)), (b[:1], b[1:].reshape(2, 1))
    assert float(cosine_similarity(ta, tb)) == pytest.approx(want, rel=1e-14)
    # complex arrays: the real part of <a, b> (vdot conjugates the first argument)
    za, zb = np.array([1 + 1j, 2.0]), np.array([1j, 1 - 1j])
    zwant = np.real(np.vdot(za, zb)) / (np.linalg.norm(za) * np.linalg.norm(zb))
    assert float(cosine_similarity(za, zb)) == pytest.approx(zwant, rel=1e-14)


def test_relative_error_of_arrays_and_trees():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 1.0])
    assert float(relative_error(a, b)) == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-14)
    assert float(relative_error(b, a)) == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(a), rel=1e-14)  # not symmetric
    tree_a, tree_b = {"u": a[:2], "v": a[2:]}, {"u": b[:2], "v": b[2:]}
    assert float(relative_error(tree_a, tree_b)) == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-14)
    z = np.array([3 + 4j, 0.0])  # |.| of complex entries
    assert float(relative_error(z, np.array([0.0, 1.0]))) == pytest.approx(math.sqrt(26.0), rel=1e-14)


def test_compare_per_layer_is_per_layer_weights_only(tiny):
    net, x, y, W, b = tiny
    ref = bp_gradient(net, jnp.asarray(x), jnp.asarray(y))
    # layer 1 exact, layer 2 with its weights scaled by -2 (cos -1, rel. error 3) and biases garbage (ignored)
    est = ref.with_matrices((ref.weights[0], -2.0 * ref.weights[1]), (ref.biases[0] + 100.0, ref.biases[1] * 0.0))
    cmp = compare_per_layer(est, ref)
    np.testing.assert_allclose(cmp["cosine"], [1.0, -1.0], rtol=1e-12)
    np.testing.assert_allclose(cmp["relative_error"], [0.0, 3.0], atol=1e-12)
    assert [len(w) for w in layer_weights(net)] == [1, 1]
    np.testing.assert_array_equal(layer_weights(net)[1][0], W[1])


def test_layer_weights_of_a_convolutional_network():
    """Sub-layers without a weight (pooling, reshapes inside a Sequential) are skipped, kernels are kept."""
    from dynlearn.networks import lenet5

    net = lenet5(key=jax.random.key(0), in_shape=(1, 12, 12), n_out=3, pool="avg")
    shapes = [[w.shape for w in ws] for ws in layer_weights(net)]
    assert shapes == [[(6, 1, 5, 5)], [(16, 6, 5, 5)], [(120, 16)], [(84, 120)], [(3, 84)]]


def test_loglog_slope_recovers_power_laws_and_rejects_bad_points():
    x = np.array([1e-3, 1e-2, 1e-1])
    assert loglog_slope(x, 7.0 * x**2) == pytest.approx(2.0, abs=1e-12)
    assert loglog_slope(x, 0.1 * x**-1) == pytest.approx(-1.0, abs=1e-12)
    assert loglog_slope([1.0, 2.0], [3.0, 3.0]) == pytest.approx(0.0, abs=1e-12)
    # least squares over all points, not the end points: a kinked curve has the fitted slope
    xs, ys = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 16.0])
    want = np.polyfit(np.log(xs), np.log(ys), 1)[0]
    assert loglog_slope(xs, ys) == pytest.approx(want, rel=1e-12)
    bad = (([1.0, 0.0], [1.0, 2.0]), ([-1.0, 2.0], [1.0, 2.0]), ([1.0, 2.0], [1.0, -2.0]), ([1.0], [1.0]), ([1.0, 2.0], [0.0, 1.0]))
    for bad_x, bad_y in bad:
        with pytest.raises(ValueError, match="two positive points"):
            loglog_slope(bad_x, bad_y)


# ----------------------------------------------------------------------------- analysis.fixed_points


def test_energy_increase_is_the_largest_rise():
    e = np.array([5.0, 4.0, 4.5, 3.0, 3.2, 1.0])  # rises of 0.5 and 0.2: the largest counts
    assert energy_increase(e) == pytest.approx(0.5 / 5.0)
    assert energy_increase(e, scale=2.0) == pytest.approx(0.25)
    assert energy_increase(np.array([-1.0, -2.0, -1.5, -3.0])) == pytest.approx(0.5 / 3.0)  # scale max |E|, E < 0 too
    assert energy_increase(np.array([3.0, 2.0, 1.0])) == 0.0  # monotone: no rise (never negative)
    assert energy_increase(np.array([1.0, np.nan, 2.0, 1.5])) == pytest.approx(0.5)  # NaN samples are dropped
    assert energy_increase(np.array([1.0])) == 0.0
    assert energy_increase(np.array([0.0, 0.0, 1e-300])) > 0  # a zero scale does not divide by zero


def test_spectrum_and_stability():
    A = np.array([[-1.0, 2.0], [0.0, -3.0]])
    ev = spectrum(lambda t, y, args: args @ y, jnp.zeros(2), jnp.asarray(A))
    np.testing.assert_allclose(ev, [-1.0, -3.0])  # sorted, largest real part first
    assert is_stable(ev) and is_stable(ev, margin=0.5) and not is_stable(ev, margin=1.0)
    assert not is_stable(np.array([-1.0, 0.0]))


# ----------------------------------------------------------------------------- dynamics: core numerics


def test_max_norm_is_the_largest_absolute_entry_over_leaves():
    tree = {"a": jnp.array([1.0, -7.0, 2.0]), "b": (jnp.array([[3.0, 4.0]]), jnp.zeros((0,)))}
    assert float(max_norm(tree)) == 7.0  # not the mean, not the signed max, empty leaves skipped
    assert float(max_norm({"z": jnp.array([3 + 4j])})) == 5.0
    assert float(max_norm(())) == 0.0
    assert bool(all_finite(tree)) and not bool(all_finite({"a": jnp.array([1.0, jnp.nan])}))


def test_a_nan_state_is_diverged_and_a_steady_one_converged():
    decay = relax(lambda t, y, args: -y, jnp.ones(3), None, DEFAULT)
    assert int(decay.status) == CONVERGED and float(decay.residual) <= DEFAULT.tol
    nan = relax(lambda t, y, args: y * jnp.nan, jnp.ones(3), None, DEFAULT, throw=False)
    assert int(nan.status) == DIVERGED
    # with fixed steps the NaN is accepted: the divergence event stops the solve at once, not after max_steps steps
    euler = relax(lambda t, y, args: y * jnp.nan, jnp.ones(3), None, DEFAULT.replace(solver="euler"), throw=False)
    assert int(euler.status) == DIVERGED and int(euler.num_steps) < 10


def test_a_fixed_budget_past_the_bound_is_diverged_and_inside_it_converged():
    """No event runs with a fixed budget: the bound is judged at t1 (y' = y from 1 reaches e^4 = 54.6 at t1 = 4)."""
    grow = lambda t, y, args: y  # noqa: E731
    budget = DEFAULT.replace(solver="euler", dt0=0.1, t1=4.0, steady=False, throw=False)
    assert int(relax(grow, jnp.ones(2), None, budget.replace(bound=10.0)).status) == DIVERGED
    inside = relax(grow, jnp.ones(2), None, budget.replace(bound=100.0))
    assert int(inside.status) == CONVERGED and 40.0 < float(inside.state[0]) < 60.0  # (1.1)^40 = 45.3


def test_unsafe_brownian_paths_for_every_sde_solver():
    """One Gaussian draw per step: Euler and Heun take increments, ShARK needs the Lévy area; the OU variance at
    t = 2 matches sigma^2 (1 - e^{-4}) / 2 within the 3-sigma sampling error of 4000 paths."""
    from dynlearn.dynamics import simulate

    sigma = 0.7
    expect = sigma**2 * (1 - np.exp(-4.0)) / 2
    for solver in ("euler", "shark"):
        run = lambda k: simulate(lambda t, y, a: -y, jnp.zeros(()), t1=2.0, dt0=0.05, solver=solver,  # noqa: E731
                                 diffusion=lambda t, y, a: sigma * jnp.ones(()), key=k, brownian="unsafe").final
        finals = np.asarray(jax.vmap(run)(jax.random.split(jax.random.key(3), 4000)))
        assert abs(finals.var() - expect) < 3 * expect * np.sqrt(2 / 4000) + 0.02 * expect, (solver, finals.var(), expect)


def test_out_of_steps_is_a_divergence_only_when_the_bound_is_within_reach():
    """max_steps hit while the state moves at speed r: diverged when r (t1 - t) exceeds the bound (it would cross it
    before t1), else MAX_STEPS. y' = 1 from 0: at t = 5, r (t1 - t) = 995 against bounds of 1000 and 990."""
    from dynlearn.dynamics import MAX_STEPS

    drift = lambda t, y, args: jnp.ones_like(y)  # noqa: E731
    cfg = DEFAULT.replace(solver="euler", dt0=0.1, t1=1000.0, max_steps=50, throw=False)
    assert int(relax(drift, jnp.zeros(2), None, cfg.replace(bound=1000.0)).status) == MAX_STEPS
    assert int(relax(drift, jnp.zeros(2), None, cfg.replace(bound=990.0)).status) == DIVERGED


def test_a_virtual_brownian_path_is_the_same_path_at_any_step():
    """dy = dW from 0 with Euler ends at W(t1) exactly: the same for two step sizes on one virtual tree (an unsafe
    path draws new increments instead)."""
    from dynlearn.dynamics import simulate

    def end(dt, brownian):
        return float(simulate(lambda t, y, a: jnp.zeros_like(y), jnp.zeros(()), t1=1.0, dt0=dt, solver="euler",
                              diffusion=lambda t, y, a: jnp.ones(()), key=jax.random.key(5), brownian=brownian).final)

    assert abs(end(0.1, "virtual") - end(0.025, "virtual")) < 1e-5
    assert abs(end(0.1, "unsafe") - end(0.025, "unsafe")) > 1e-3


def test_polish_without_a_root_raises():
    from dynlearn.dynamics import NOT_STEADY, polish
    from dynlearn.errors import NotConvergedError

    no_root = lambda t, y, args: -(y**2 + 1.0)  # noqa: E731
    with pytest.raises(NotConvergedError, match="Newton polish stopped"):
        polish(no_root, jnp.array([0.5]))
    assert int(polish(no_root, jnp.array([0.5]), throw=False).status) in (NOT_STEADY, DIVERGED)


def test_a_state_exactly_at_the_bound_is_inside_it():
    """The bounded region is max|y| <= bound: a state resting on the bound (here a zero field at max|y| = 2) has not
    diverged, in the steady mode (the event) and with a fixed budget (judged at t1)."""
    rest = lambda t, y, args: jnp.zeros_like(y)  # noqa: E731
    y0 = jnp.array([2.0, -1.0])
    assert int(relax(rest, y0, None, DEFAULT.replace(bound=2.0)).status) == CONVERGED
    budget = DEFAULT.replace(solver="euler", dt0=0.1, t1=1.0, steady=False, bound=2.0)
    assert int(relax(rest, y0, None, budget).status) == CONVERGED
    assert int(relax(rest, y0, None, DEFAULT.replace(bound=1.99), throw=False).status) == DIVERGED


def test_a_complex_state_relaxes_to_its_complex_equilibrium():
    """dz/dt = c - z with complex c: integrated as the real pair (Re z, Im z) and returned complex, at z = c, on the
    path z(t) = c (1 - e^{-t}) (a rescaled imaginary part would reach the same point on another path)."""
    c = jnp.array([1.0 + 2.0j, -0.5 - 0.25j])
    eq = relax(lambda t, z, args: args - z, jnp.zeros(2, jnp.complex64), c, DEFAULT, save_ts=jnp.array([0.5, 1.0]))
    assert jnp.iscomplexobj(eq.state) and int(eq.status) == CONVERGED
    np.testing.assert_allclose(np.asarray(eq.state), np.asarray(c), atol=1e-4)
    path = np.asarray(c)[None] * (1 - np.exp(-np.array([0.5, 1.0])))[:, None]
    np.testing.assert_allclose(np.asarray(eq.ys), path, atol=1e-4)


def test_simulate_saves_both_ends_and_raises_by_default():
    """Without a ts grid the trajectory holds t0 and t1 (y' = -y from 1: 1 and e^-1); a NaN final state raises
    unless throw=False."""
    from dynlearn.dynamics import simulate
    from dynlearn.errors import DivergedError

    traj = simulate(lambda t, y, a: -y, jnp.ones(()), t1=1.0, dt0=0.01, solver="tsit5")
    np.testing.assert_allclose(np.asarray(traj.ts), [0.0, 1.0])
    np.testing.assert_allclose(np.asarray(traj.ys), [1.0, np.exp(-1.0)], rtol=1e-4)
    blow = lambda t, y, a: y * jnp.nan  # noqa: E731
    with pytest.raises(DivergedError, match="NaN/inf in the final state"):
        simulate(blow, jnp.ones(()), t1=1.0, dt0=0.1, solver="euler")
    assert not np.isfinite(float(simulate(blow, jnp.ones(()), t1=1.0, dt0=0.1, solver="euler", throw=False).final))


# ----------------------------------------------------------------------------- theorems: verdicts and criteria


def test_criteria_are_two_sided_where_they_say_so():
    assert within(1.1, 1.0, 0.15)[2] and within(0.9, 1.0, 0.15)[2] and not within(1.2, 1.0, 0.15)[2] and not within(0.8, 1.0, 0.15)[2]
    assert between(2.0, 1.0, 2.0)[2] and not between(2.1, 1.0, 2.0)[2] and not between(0.9, 1.0, 2.0)[2]
    assert at_most(1.0, 1.0)[2] and not below(1.0, 1.0)[2] and at_least(1.0, 1.0)[2] and not above(1.0, 1.0)[2]


def test_criteria_at_their_edges_and_in_their_words():
    """Edges that are exact in binary (a bound is inside, one ulp past it is out), the requirement each prints, and
    a NaN or infinite value against each."""
    assert within(1.5, 1.0, 0.5)[2] and within(0.5, 1.0, 0.5)[2] and not within(np.nextafter(1.5, 2.0), 1.0, 0.5)[2]
    assert between(1.0, 1.0, 2.0)[2] and not between(np.nextafter(1.0, 0.0), 1.0, 2.0)[2]
    assert below(np.nextafter(1.0, 0.0), 1.0)[2] and above(np.nextafter(1.0, 2.0), 1.0)[2]
    assert not at_most(np.nextafter(1.0, 2.0), 1.0)[2] and not at_least(np.nextafter(1.0, 0.0), 1.0)[2]
    assert not below(2.0, 1.0)[2] and not above(0.0, 1.0)[2] and at_most(0.0, 1.0)[2] and at_least(2.0, 1.0)[2]
    assert between(1.5, 1.0, 2.0)[2] and within(1.2, 1.0, 0.5)[2]  # inside, off the edges
    words = {f(2.0, 1e-8)[1] for f in (at_most, below, at_least, above)}
    assert words == {"<= 1e-08", "< 1e-08", ">= 1e-08", "> 1e-08"}
    assert within(1.0, 1.0, 0.15)[1] == "1 ± 0.15" and between(1.0, 0.5, 2.0)[1] == "in [0.5, 2]"
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not within(bad, 1.0, 0.5)[2] and not between(bad, 0.0, 1.0)[2]
        assert not finite(bad)
    assert finite(0.0) and finite(-1e308)
    value, text, ok = reported(2.5)
    assert (value, ok) == (2.5, True) and is_reported(text) and is_reported("Reported: shown only")
    assert not is_reported("<= 1e-08") and not is_reported("1 ± 0.15")


def test_verdict_nan_fails_and_reported_never_counts():
    v = Verdict.from_criteria(good=at_most(0.5, 1.0), nan=at_most(float("nan"), 1.0), shown=reported(float("nan")))
    assert not v.passed and v.failed == ("nan",)
    assert v.tolerance["shown"].startswith("reported")
    only_reported = Verdict.from_criteria(shown=reported(3.0), ok=below(1.0, 2.0))
    assert only_reported.passed and only_reported.failed == ()
    assert not Verdict.from_criteria(bad=above(1.0, 2.0), shown=reported(1.0)).passed
