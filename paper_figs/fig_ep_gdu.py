"""GDU property: EP updates in the first K nudged steps against minus the BPTT gradients, per step and vs beta."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ep_gdu")
