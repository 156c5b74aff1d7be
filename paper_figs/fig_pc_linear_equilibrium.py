"""Linear PCN: relaxed equilibrium vs the closed form per depth and precisions"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_linear_equilibrium")
