"""ib_memory figure (see theory/ib_hebbian.md)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ib_memory")
