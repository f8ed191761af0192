"""mrbench: a reproducible benchmark for unsupervised MRI contrast translation."""

__version__ = "0.1.0"
