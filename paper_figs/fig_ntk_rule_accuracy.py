"""NTK-regime local rule vs backprop on digits: test accuracy against the hidden width, with all and with 20% of the training set."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ntk_rule_accuracy")
