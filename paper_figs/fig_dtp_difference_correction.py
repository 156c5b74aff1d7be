"""DTP with exact inverses: the difference correction propagates targets exactly (f_l(tau_{l-1}) = tau_l)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("dtp_difference_correction")
