"""Numerical theorem checks: one registry, one module per model family.

>>> from dynlearn.theorems import run_check
>>> result = run_check("pc_bp_limit")          # doctest: +SKIP
>>> result.passed, result.verdict.measured     # doctest: +SKIP
"""

from .registry import Check, CheckResult, Verdict, checks, get_check, register_check, run_check, run_checks

__all__ = ["Check", "CheckResult", "Verdict", "checks", "get_check", "register_check", "run_check", "run_checks"]
