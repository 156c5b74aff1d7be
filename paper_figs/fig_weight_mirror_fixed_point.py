"""Weight mirror with W fixed: B converges to (eta sigma^2 / lambda) W^T in direction and scale."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("weight_mirror_fixed_point")
