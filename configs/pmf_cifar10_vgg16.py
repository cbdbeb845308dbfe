"""PMF (Ajanthan et al., ICCV'19), binary VGG-16 on CIFAR-10: lr 0.001, lrs 0.5, bts 1.05, bti 500 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "cifar10", "vgg16")
