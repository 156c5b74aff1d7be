r"""Conductances of the dendritic cortical microcircuit (Sacramento, Costa, Bengio & Senn 2018) and their presets.

Two presets (:data:`PRESETS`): ``"sacramento2018"`` (the 2018 paper's conductances, time in ms) and ``"bern"`` (the
later reference code of the Bern group for Latent Equilibrium and PAL; the default). The effective time constant of
a hidden pyramid is :math:`\tau_{eff} = c_m/(g_{lk}+g_B+g_A)`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...errors import UnknownNameError


def concrete(v) -> bool:
    """Whether ``v`` is a concrete value (not traced), i.e. one that can be validated."""
    return not isinstance(v, jax.core.Tracer)


class MicrocircuitParams(eqx.Module):
    """Conductances (leak ``g_lk``, basal ``g_B``, apical ``g_A``, interneuron dendrite ``g_D``, output
    teaching ``g_som``, interneuron nudging ``g_nI``), capacitance ``c_m`` and somatic noise ``sigma``.

    Values may be Python floats or (traceable) JAX scalars; concrete values are validated.
    """

    g_lk: Any = 0.03
    g_B: Any = 0.1
    g_A: Any = 0.06
    g_D: Any = 0.1
    g_som: Any = 0.06
    g_nI: Any = 0.06
    c_m: Any = 1.0
    sigma: Any = 0.0

    def __check_init__(self):
        for name in ("g_lk", "g_B", "g_A", "g_D", "g_som", "g_nI", "sigma"):
            v = getattr(self, name)
            if concrete(v):
                a = np.asarray(v, dtype=float)
                if not np.all(np.isfinite(a)) or np.any(a < 0):
                    what = "noise amplitude" if name == "sigma" else "conductance"
                    raise ValueError(f"microcircuit {what} {name} must be finite and >= 0, got {v!r}")
        for name in ("g_B", "g_D", "c_m"):
            v = getattr(self, name)
            if concrete(v) and not np.all(np.asarray(v, dtype=float) > 0):
                raise ValueError(
                    f"microcircuit {name} must be > 0 (got {v!r}): "
                    + ("the membrane time constant c_m/g_total would be <= 0" if name == "c_m" else "the dendrite would be disconnected")
                )

    # total conductances and time constants
    @property
    def g_hidden(self):
        """:math:`g_{lk}+g_B+g_A` (hidden pyramids)."""
        return self.g_lk + self.g_B + self.g_A

    @property
    def g_out_free(self):
        """:math:`g_{lk}+g_B` (output pyramids without teaching current)."""
        return self.g_lk + self.g_B

    @property
    def g_inter(self):
        """:math:`g_{lk}+g_D+g_{nI}` (interneurons)."""
        return self.g_lk + self.g_D + self.g_nI

    @property
    def tau_hidden(self):
        """Effective time constant of the hidden pyramids, :math:`c_m/(g_{lk}+g_B+g_A)`."""
        return self.c_m / self.g_hidden

    def attenuation(self, output: bool):
        r""":math:`\hat g = g_B/(g_{lk}+g_B+g_A)` (hidden) or :math:`g_B/(g_{lk}+g_B)` (output)."""
        return self.g_B / (self.g_out_free if output else self.g_hidden)

    @property
    def interneuron_attenuation(self):
        r""":math:`g_D/(g_{lk}+g_D)`."""
        return self.g_D / (self.g_lk + self.g_D)

    def with_feedback(self, ratio) -> MicrocircuitParams:
        r"""The weak-feedback family of the BP theorem: :math:`g_A = g_{som} = \lambda g_B` with :math:`\lambda` = ``ratio``."""
        return eqx.tree_at(lambda p: (p.g_A, p.g_som), self, (ratio * self.g_B, ratio * self.g_B))

    def replace(self, **changes) -> MicrocircuitParams:
        """A copy with some values changed."""
        return eqx.tree_at(lambda p: tuple(getattr(p, k) for k in changes), self, tuple(changes.values()))

    def as_arrays(self, dtype=None) -> MicrocircuitParams:
        """The same values as JAX scalars (so a jitted solve is not recompiled when a value changes)."""
        return jax.tree.map(lambda v: jnp.asarray(v, dtype=dtype), self)


PRESETS: dict[str, dict[str, float]] = {
    # Sacramento et al. (2018) NeurIPS, simulation details (values as corroborated by a public NEST
    # replication: total somatic conductance 1.9, g_A = 0.8, g_B = 1, g_som = 0.8); time in ms.
    "sacramento2018": dict(g_lk=0.1, g_B=1.0, g_A=0.8, g_D=1.0, g_som=0.8, g_nI=0.8, c_m=1.0, sigma=0.0),
    # The Bern group's later reference code (Latent Equilibrium, PAL): tau_eff = 1/0.19 = 5.26 ms.
    "bern": dict(g_lk=0.03, g_B=0.1, g_A=0.06, g_D=0.1, g_som=0.06, g_nI=0.06, c_m=1.0, sigma=0.0),
}


def preset(name: str = "bern", **overrides) -> MicrocircuitParams:
    """The conductances of a named preset (``"bern"`` or ``"sacramento2018"``), with ``overrides``."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown microcircuit preset {name!r}; choose one of {sorted(PRESETS)}")
    return MicrocircuitParams(**{**PRESETS[name], **overrides})
