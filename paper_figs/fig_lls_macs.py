"""LLS variants vs BP: MACs per training step (XLA cost analysis) per network, and the ratio to BP"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("lls_macs")
