"""MD-softmax (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-100: lr 0.0001, lrs 0.3, bts 1.01, bti 100 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax", "cifar100", "vgg16")
