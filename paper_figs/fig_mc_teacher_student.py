"""Nonlinear teacher-student regression learned in continuous time by a microcircuit (all plasticity on, fixed random top-down) vs a shallow learner."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_teacher_student")
