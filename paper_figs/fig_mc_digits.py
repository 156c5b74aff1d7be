"""scikit-learn digits classified by the microcircuit learner vs backprop."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_digits")
