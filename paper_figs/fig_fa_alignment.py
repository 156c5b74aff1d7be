"""Feedback alignment on a linear teacher-student task: angle(W^T, B) and angle(FA update, BP gradient) during training."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("fa_alignment")
