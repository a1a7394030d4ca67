"""bgmatting: Background Matting (Sengupta et al., CVPR 2020) as a research training framework."""

__version__ = "0.1.0"
