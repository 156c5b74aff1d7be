"""Nonlinear teacher-student regression (Sacramento et al. 2018) learned in continuous time by a microcircuit with prospective (LE) rates, all plasticity on, top-down fixed random (FA) or along W^T, vs a shallow learner (and, with --full, the same microcircuit without LE)."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("mc_teacher_student")
