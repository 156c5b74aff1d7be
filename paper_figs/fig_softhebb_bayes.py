"""SoftHebb on a von Mises-Fisher mixture: weights to component means, outputs to the posterior."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("softhebb_bayes")
