"""SoftHebb: weight-norm gaps against the exact law and the linearised rate 2 eta m*."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("softhebb_norm")
