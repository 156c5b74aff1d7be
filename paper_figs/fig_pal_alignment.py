"""PAL: angle between the learned backward matrices and W^T against simulated time (mean +- sd over seeds), with the noise-off and alpha = 0 controls."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pal_alignment")
