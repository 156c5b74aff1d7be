"""TDCA: digits accuracy against BP and DFA, and the non-convex toy landscape with where BP and TDCA end."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("tdca")
