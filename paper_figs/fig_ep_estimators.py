"""Relative error of one-sided, symmetric and holomorphic EP gradient estimates against the implicit gradient, vs beta and vs N."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ep_estimators")
