"""hrcam: high-resolution Class Activation Maps for CNN classifiers."""

__version__ = "0.1.0"
