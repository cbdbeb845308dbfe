"""MD-tanh-S (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-100: lr 0.001, lrs 0.5, bts 1.05, bti 500 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh_s", "cifar100", "vgg16")
