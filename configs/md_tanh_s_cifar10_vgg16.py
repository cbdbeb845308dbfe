"""MD-tanh-S (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-10: lr 0.001, lrs 0.2, bts 1.2, bti 2000 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `model.use_bias=True` (md-bnn / pmf VGG: biased convs and fc1/fc2, quantized)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_tanh_s", "cifar10", "vgg16")
