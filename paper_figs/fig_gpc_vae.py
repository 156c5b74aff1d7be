"""A VAE on 8x8 digits trained by generalised PC vs backprop: held-out reconstruction BCE per epoch, and originals vs reconstructions."""
from dynlearn.figures import figure_main

if __name__ == "__main__":
    figure_main("gpc_vae")
