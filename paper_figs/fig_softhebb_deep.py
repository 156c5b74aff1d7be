"""Multilayer SoftHebb: accuracy per depth against BP on the same conv network, and per epoch."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("softhebb_deep")
