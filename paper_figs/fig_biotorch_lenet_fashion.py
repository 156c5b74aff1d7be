"""BioTorch's Fashion-MNIST LeNet table: BP, FA, DFA, uSF, brSF, frSF, test error at the best validation epoch beside the published numbers (--full: 50k/10k split, 30 epochs)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("biotorch_lenet_fashion")
