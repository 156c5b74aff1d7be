"""Generalised PC with a categorical output: update / gamma tends to backprop's cross-entropy gradient."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("gpc_ce_limit")
