"""Microcircuit updates approach backprop (B = W^T) or feedback alignment (random B) as the feedback strength lambda falls; the apical potential codes the projected error to O(lambda)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_error_vs_lambda")
