"""PC learning with prospective configuration: energy, BP loss and gradient norms vs EM step"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_em_critical_point")
