"""Directional DFA: error of the forward-mode Jacobian estimate against the number of directions, and its bias."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ddfa_unbiased")
