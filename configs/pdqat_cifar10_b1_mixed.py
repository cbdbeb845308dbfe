"""PD-QAT mixed precision (Fig. 1): 1-bit ResNet-20q on CIFAR-10, output constraint (eps_out 0.1),
the layers of config.quant.full_precision_layers at 32 bits (recipe: jaxquant.papers.pdqat.pdqat_mixed_cifar10;
launch/pdqat.sh sets them from a ranking run)."""
from jaxquant.papers.pdqat import pdqat_mixed_cifar10


def get_config():
    return pdqat_mixed_cifar10("")
