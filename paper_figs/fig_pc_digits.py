"""PC vs BP on scikit-learn digits: test accuracy per epoch, same network and optimiser"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_digits")
