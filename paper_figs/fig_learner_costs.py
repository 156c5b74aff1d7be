"""MACs (XLA cost analysis), peak memory and time of one compiled training step, every learner"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("learner_costs")
