"""Raster and membrane traces of a small LIF network; fixed-step spike times converge to event-driven exact ones at O(dt)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("lif_event_vs_fixed_step")
