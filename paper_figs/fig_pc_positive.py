"""Positive-rate PC with learned one-way feedback vs clamped PC: test accuracy per seed and the gap (1-point bar)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_positive_accuracy")
