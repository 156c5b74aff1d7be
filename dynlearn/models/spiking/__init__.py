r"""Spiking networks: leaky integrate-and-fire neurons as ODEs with threshold and reset.

* :mod:`.neurons` — LIF and adaptive LIF (ALIF) populations, the spike nonlinearity with a surrogate derivative,
  and the fixed-step integrator (one exact-exponential step per ``dt``, a ``lax.scan`` over time) that training uses.
* :mod:`.events` — event-driven exact spike times for small networks: diffrax integrates the subthreshold ODE,
  an event root-find stops it at the threshold crossing, the state is reset and integration continues.
* :mod:`.ide` — implicit differentiation on the equilibrium of feedback spiking networks (Xiao et al., NeurIPS 2021).

Modules are imported by the registry's module discovery; this package imports none of them itself.
"""
