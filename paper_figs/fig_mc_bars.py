"""Bars task (Haider et al. 2021): validation error and accuracy of a 9-30-3 microcircuit against the presentation time, with and without Latent Equilibrium."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_bars")
