"""PD-QAT Table 1 cell: 2-bit ResNet-20q on CIFAR-10, baseline (recipe: jaxquant.papers.pdqat.pdqat_cifar10)."""
from jaxquant.papers.pdqat import pdqat_cifar10


def get_config():
    return pdqat_cifar10(2, "baseline")
