"""PEPITA vs adaptive feedback alignment: 1 - cos(first-layer updates) vs modulation strength, and angles during digits training"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pepita_as_fa")
