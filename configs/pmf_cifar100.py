"""PMF (Ajanthan et al., ICCV'19), binary ResNet-18 on CIFAR-100: lr 0.001, lrs 0.3, bts 1.01, bti 100 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "cifar100", "resnet18")
