"""Desire BP's test accuracy per epoch: Fashion-MNIST with the paper's 784-512-256-10 network (--full), coded digits (quick)"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("desire_fashion_mnist")
