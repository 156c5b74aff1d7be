"""Fixed-prediction PC: residual vs time and the equilibrium error against BP's deltas"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_fixed_prediction_exact")
