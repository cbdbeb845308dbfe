"""MD-softmax-S (Ajanthan et al., AISTATS'21), binary ResNet-18 on TinyImageNet: lr 0.001, lrs 0.1, bts 1.02, bti 100 (jaxquant.papers.mirror).

Data: --config.dataset.name=tiny_imagenet:/path/to/tiny-imagenet-200 (default data/tiny-imagenet-200).
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax_s", "tiny_imagenet", "resnet18")
