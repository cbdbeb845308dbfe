"""MD-softmax (Ajanthan et al., AISTATS'21), binary ResNet-18 on CIFAR-10: lr 0.001, lrs 0.2, bts 1.02, bti 200 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `dual_step='md_bnn'` (md-bnn's u (exp(.) + 1e-20): a level at 0 stays 0)
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax", "cifar10", "resnet18")
