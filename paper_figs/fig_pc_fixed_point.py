"""Spectrum of the PC flow's Jacobian at the clamped equilibrium (all Re < 0)"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_fixed_point")
