"""PMF (Ajanthan et al., ICCV'19), binary ResNet-18 on TinyImageNet: lr 0.001, lrs 0.5, bts 1.01, bti 100 (jaxquant.papers.mirror).

Data: --config.dataset.name=tiny_imagenet:/path/to/tiny-imagenet-200 (default data/tiny-imagenet-200).
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "tiny_imagenet", "resnet18")
