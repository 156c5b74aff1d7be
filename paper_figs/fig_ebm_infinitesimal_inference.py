"""PC, EP and CHL gradient errors to their references vs the nudge strength: three slope-1 lines."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ebm_infinitesimal_inference")
