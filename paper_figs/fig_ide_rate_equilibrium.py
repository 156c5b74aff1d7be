"""IDE: time-averaged firing rates of a feedback IF network converge to the fixed point a* at O(1/T)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ide_rate_equilibrium")
