"""Self-predicting state of the dendritic microcircuit: exact initialiser and learning it from random lateral weights."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_sps")
