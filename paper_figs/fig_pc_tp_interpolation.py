"""Distance of the PC equilibrium to TP and BP targets vs the precision ratio"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_tp_interpolation")
