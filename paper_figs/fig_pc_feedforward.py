"""With the output free, PC relaxes to the feedforward pass: distance vs time"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_feedforward")
