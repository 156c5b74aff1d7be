"""F(t) and |dF/ds|^2 along EP's free and nudged relaxations."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ep_energy_descent")
