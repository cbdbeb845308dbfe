"""MD-tanh (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-100: lr 0.001, lrs 0.3, bts 1.05, bti 500 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `dual_step='md_bnn'` (md-bnn's float32 MDAadam update: x = -1 absorbing)
- `model.use_bias=True` (md-bnn / pmf VGG: biased convs and fc1/fc2, quantized)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh", "cifar100", "vgg16")
