"""PC energy and squared gradient norm along the inference flow, several random nets"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_energy_descent")
