"""SoftHebb vs an equally sized BP network under input noise and FGSM."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("softhebb_robustness")
