"""Experiments: longer runs than a theorem check, each behind a figure and a slow test of its claim.

* :mod:`.teacher_student` — nonlinear teacher-student regression learned in continuous time by a dendritic
  microcircuit (Sacramento et al. 2018, §3.2).
* :mod:`.bars` — the bars task with and without Latent Equilibrium against the presentation time (Haider et al. 2021).
* :mod:`.digits` — scikit-learn digits, the steady-state microcircuit learner against backprop.
* :mod:`.temporal_tasks` — store-and-recall for recurrent spiking networks (e-prop against BPTT; Bellec et al. 2020).

Quick by default (seconds), paper-scale with ``quick=False``.
"""
