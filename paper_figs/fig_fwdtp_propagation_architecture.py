"""FW-DTP's propagation architecture: update / eta tends to the linear propagation through the feedback Jacobians."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("fwdtp_propagation_architecture")
