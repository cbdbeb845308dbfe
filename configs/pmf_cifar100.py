"""PMF (Ajanthan et al., ICCV'19), binary ResNet-18 on CIFAR-100: lr 0.001, lrs 0.3, bts 1.01, bti 100 (jaxquant.papers.mirror; the headline config, = pmf_cifar100_resnet18.py).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `jacobian='pmf_code'` (the pmf repo's beta (I - u'u'^T), u' = softmax(beta u))
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "cifar100", "resnet18")
