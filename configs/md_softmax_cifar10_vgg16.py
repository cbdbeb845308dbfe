"""MD-softmax (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-10: lr 0.01, lrs 0.2, bts 1.05, bti 500 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax", "cifar10", "vgg16")
