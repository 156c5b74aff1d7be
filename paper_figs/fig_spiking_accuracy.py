"""Accuracy of BPTT, e-prop, S-TLLR and desire BP spiking networks vs the BP MLP of the same size (quick: coded digits; full: Fashion-MNIST, with desire BP's 87.56%)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("spiking_accuracy")
