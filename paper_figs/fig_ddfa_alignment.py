"""Directional DFA: angle between the learned feedback and the true Jacobian during training."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ddfa_alignment")
