"""MD-tanh-S (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-10: lr 0.001, lrs 0.2, bts 1.2, bti 2000 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh_s", "cifar10", "vgg16")
