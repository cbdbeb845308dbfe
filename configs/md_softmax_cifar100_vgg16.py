"""MD-softmax (Ajanthan et al., AISTATS'21), binary VGG-16 on CIFAR-100: lr 0.0001, lrs 0.3, bts 1.01, bti 100 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `dual_step='md_bnn'` (md-bnn's u (exp(.) + 1e-20): a level at 0 stays 0)
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
- `model.use_bias=True` (md-bnn / pmf VGG: biased convs and fc1/fc2, quantized)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("md_softmax", "cifar100", "vgg16")
