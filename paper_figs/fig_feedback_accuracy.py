"""Test error of BP, FA, DFA, KP, weight mirror, sign symmetry (uSF, brSF, frSF) and PAL on the same network (digits; Fashion-MNIST with --full)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("feedback_accuracy")
