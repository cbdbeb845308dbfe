"""MD-softmax-S (Ajanthan et al., AISTATS'21), binary ResNet-18 on CIFAR-100: lr 0.001, lrs 0.2, bts 1.1, bti 200 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax_s", "cifar100", "resnet18")
