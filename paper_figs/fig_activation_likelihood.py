"""activation_likelihood figure (see theory/activation_learning.md)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("activation_likelihood")
