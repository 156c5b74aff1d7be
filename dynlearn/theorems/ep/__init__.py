r"""Theorem checks for equilibrium propagation, exact equilibrium gradients and the infinitesimal-inference limit.

Each check builds a small float64 network, measures what the theorem predicts over a swept variable
(time, seed, β, N, horizon, step), and returns an :class:`xarray.Dataset` and a :class:`Verdict`. Models
enter through ``model_cls`` (or ``ep_model_cls`` / ``gradient_fn``) so that the tests can run every check
with a deliberately broken component and see it fail. The theory pages under ``theory/`` give the
statements, the tolerances and the numbers measured. One module per theorem (all in family ``"ep"``):

* :mod:`.energy` — ``ep_energy_descent``, ``ep_fixed_point``;
* :mod:`.estimators` — ``ep_gradient_one_sided``, ``ep_gradient_symmetric``, ``ep_holomorphic``;
* :mod:`.implicit` — ``implicit_vs_bptt``; :mod:`.gdu` — ``ep_gdu``; :mod:`.unified` — ``ebm_infinitesimal_inference``;
* :mod:`.problem` — the shared network, relaxation presets and the memoised β sweep.
"""

# imported in the order the checks are listed
from . import energy, estimators, implicit, gdu, unified  # noqa: F401  (registers the checks)
from .gdu import NonGradientRNN
from .problem import EP_POLISHED, EP_THEOREM, ep_problem

__all__ = ["EP_POLISHED", "EP_THEOREM", "NonGradientRNN", "ep_problem"]
