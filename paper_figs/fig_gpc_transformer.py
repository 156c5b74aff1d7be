"""A one-block causal transformer trained by generalised PC vs backprop on a Markov chain: held-out cross-entropy and accuracy per epoch."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("gpc_transformer")
