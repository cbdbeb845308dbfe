"""MD-tanh (Ajanthan et al., AISTATS'21), binary ResNet-18 on CIFAR-100: lr 0.001, lrs 0.3, bts 1.05, bti 500 (jaxquant.papers.mirror)."""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh", "cifar100", "resnet18")
