"""MD-softmax-S (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-100: lr 0.0001, lrs 0.2, bts 1.2, bti 500 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
- `model.use_bias=True` (md-bnn / pmf VGG: biased convs and fc1/fc2, quantized)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax_s", "cifar100", "vgg16")
