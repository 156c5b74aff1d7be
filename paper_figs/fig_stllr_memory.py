"""Training-step memory (XLA memory analysis) against the number of time steps T: S-TLLR flat, BPTT linear."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("stllr_memory")
