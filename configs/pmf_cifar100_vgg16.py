"""PMF (Ajanthan et al., ICCV'19), binary VGG-16 on CIFAR-100: lr 0.0001, lrs 0.5, bts 1.02, bti 200 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `jacobian='pmf_code'` (the pmf repo's beta (I - u'u'^T), u' = softmax(beta u))
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
- `model.use_bias=True` (md-bnn / pmf VGG: biased convs and fc1/fc2, quantized)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "cifar100", "vgg16")
