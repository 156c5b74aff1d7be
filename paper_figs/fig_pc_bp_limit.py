"""PC's nudged update / gamma against BP's gradient: cosine and relative error vs gamma, per layer"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pc_bp_limit")
