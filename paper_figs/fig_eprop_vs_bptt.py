"""e-prop vs BPTT on the pattern-generation task: gradient cosine per loss horizon, and learning curves."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("eprop_vs_bptt")
