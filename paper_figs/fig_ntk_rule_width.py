"""NTK-regime local rule: 1 - cos(rule update, BP update) against the width, NTK vs standard parametrisation."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("ntk_rule_width")
