"""MD-tanh (Ajanthan et al., AISTATS'21), binary ResNet-18 on CIFAR-10: lr 0.001, lrs 0.3, bts 1.01, bti 100 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `dual_step='md_bnn'` (md-bnn's float32 MDAadam update: x = -1 absorbing)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh", "cifar10", "resnet18")
