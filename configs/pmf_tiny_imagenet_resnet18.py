"""PMF (Ajanthan et al., ICCV'19), binary ResNet-18 on TinyImageNet: lr 0.001, lrs 0.5, bts 1.01, bti 100 (jaxquant.papers.mirror).

Official-code options (the library defaults follow the paper; docs/fidelity.md):
- `jacobian='pmf_code'` (the pmf repo's beta (I - u'u'^T), u' = softmax(beta u))
- `logit_init='xavier_wide'` (xavier bound of the d-times wider layer)

Protocol: pmf's code trains on all 100k training images and selects the model on
val, which is also the split it reports (`test_set = val_set`): the published
number is a best-on-test accuracy. This config does the same
(`dataset.validation_is_test=True`); for an honest selection on a 5k split of
train add `--config.dataset.validation_is_test=False --config.dataset.validation=5000`.

Data: --config.dataset.name=tiny_imagenet:/path/to/tiny-imagenet-200 (default data/tiny-imagenet-200).
"""
from jaxquant.papers import mirror


def get_config():
    return mirror.config("pmf", "tiny_imagenet", "resnet18")
