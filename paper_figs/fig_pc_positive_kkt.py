"""Positive-rate PC: energy along the projected flow and KKT residuals"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_positive_kkt")
