"""Meta-learned plasticity: learned coefficients and held-out few-shot accuracy against plain FA."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("meta_plasticity_low_data")
