"""e-prop (symmetric, random, adaptive feedback) vs BPTT on store-and-recall with ALIF neurons: learning curves and feedback angle."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("eprop_recall")
