"""Kolen-Pollack: ||W - B^T|| decays exactly as (1 - lambda)^t under SGD, and B aligns with W^T."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("kp_exact_decay")
