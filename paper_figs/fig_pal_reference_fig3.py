"""PAL in the authors' Fig. 3a-c setting: each backward matrix's angle to W^T against simulated time, with their stored data (mean +- 2 sd)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pal_reference_fig3")
