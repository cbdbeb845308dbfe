"""PD-QAT Table 1 cell: 1-bit ResNet-20q on CIFAR-10, baseline column: con-qat's train_anyprec.py
(seeds 0-2; --config.method.baseline=vanilla for train_vanilla.py --vanilla, seeds 3-5), not plain
DoReFa (recipe: jaxquant.papers.pdqat.pdqat_cifar10)."""
from jaxquant.papers.pdqat import pdqat_cifar10


def get_config():
    return pdqat_cifar10(1, "baseline")
