"""PMF (Ajanthan et al., ICCV'19), binary VGG-16 on CIFAR-100: lr 0.0001, lrs 0.5, bts 1.02, bti 200 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "cifar100", "vgg16")
