"""PD-QAT with the output constraint, 2-bit ResNet-8q on Fashion-MNIST (CPU-sized; jaxquant.papers.pdqat)."""
from jaxquant.papers.pdqat import pdqat_fashion_mnist


def get_config():
    return pdqat_fashion_mnist(2, "output")
