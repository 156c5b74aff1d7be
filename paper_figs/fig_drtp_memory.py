"""DRTP/TPSGD vs BP: activation memory per sample and peak memory of the compiled step (XLA) against depth"""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("drtp_memory")
