"""PD-QAT Table 1 cell: 2-bit ResNet-20q on CIFAR-10, baseline (recipe: jaxquant.recipes.pdqat_cifar10)."""
from jaxquant.recipes import pdqat_cifar10


def get_config():
    return pdqat_cifar10(2, "baseline")
