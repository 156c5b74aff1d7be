"""Relative error of BPTT through a relaxation of horizon T against the implicit gradient, with the predicted contraction rate."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ep_implicit_vs_bptt")
