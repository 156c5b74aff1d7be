"""Latent Equilibrium: after an input step the prospective output equals the feedforward output at every time; standard rates lag by about depth x tau."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("le_tracking")
