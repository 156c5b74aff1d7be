"""1-1-1 chain whose backward weight starts with the wrong sign: PAL learns the teacher, feedback alignment does not."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("pal_vs_fa_sign")
