"""The MD (Ajanthan et al., AISTATS'21) and PMF (ICCV'19) experiment table, as configs.

`config(method, dataset, net)` is the run of one cell of METHODS.md §1's table:
binary weights, every tensor quantized (first/last layer and biases included),
non-affine BatchNorm, xavier-uniform init (normal(0, 0.1) for 1-D tensors), Adam
(0.9, 0.999, 1e-8), batch 128, 100k iterations, lr x `lrs` every 30k iterations,
beta_t = bts^ceil(t/bti) (MD cap 1e35, PMF 1e4), weight decay 0 (PMF 1e-4); the
rounded network evaluated every 100 iterations and the best one reported.

Each cell runs what the official code ran (it produced the published numbers),
where that differs from the library defaults (docs/fidelity.md):
- PMF: `jacobian='pmf_code'` -- the pmf repo's Jacobian beta (I - u'u'^T) with
  u' = softmax(beta u), not the paper's u (default 'paper').
- MD-tanh, MD-softmax: `dual_step='md_bnn'` -- md-bnn's float32 update expressions,
  under which a saturated weight (x = -1, an underflowed level) never moves again
  (default 'stable': dual-space steps with clipping, saturation recoverable).
- MD-softmax, MD-softmax-S, PMF: `logit_init='xavier_wide'` -- logits drawn
  xavier-uniform for the d-times wider layer the code holds,
  bound sqrt(6 / (fan_in + d fan_out)), normal(0, 0.1) for 1-D (default 'random').
- VGG-16: `model.use_bias=True` -- md-bnn's / pmf's VGG convs and fc1/fc2 carry
  biases (quantized like every tensor: quant.include '.*'); jaxquant's VGG has
  none by default (each is followed by BatchNorm).
- TinyImageNet: `dataset.validation_is_test=True` -- both repos train on all
  100k training images and select the model on val, which is also the split they
  report (`test_set = val_set`), so the published number is a best-on-test
  accuracy. For an honest selection use `--config.dataset.validation_is_test=False
  --config.dataset.validation=5000` (a 5k split of train, as on CIFAR). CIFAR
  cells select on the last 5k training images, as the code does.

TinyImageNet reads `tiny_imagenet:<path>` (the official tiny-imagenet-200 layout,
default path `data/tiny-imagenet-200`; override with
`--config.dataset.name=tiny_imagenet:/path/to/tiny-imagenet-200`).
"""
from __future__ import annotations

from jaxquant.config import base_config

TINY_IMAGENET_DEFAULT = "tiny_imagenet:data/tiny-imagenet-200"
METHODS = ("md_tanh_s", "md_softmax_s", "md_tanh", "md_softmax", "pmf")
DATASETS = ("cifar10", "cifar100", "tiny_imagenet")
NETS = ("resnet18", "vgg16")

# (dataset, net) -> method -> (lr, lrs, bts, bti); METHODS.md §1.
TABLE = {
    ("cifar10", "resnet18"): dict(
        md_tanh_s=(1e-3, 0.3, 1.02, 200), md_softmax_s=(1e-3, 0.3, 1.02, 200),
        md_tanh=(1e-3, 0.3, 1.01, 100), md_softmax=(1e-3, 0.2, 1.02, 200),
        pmf=(1e-3, 0.3, 1.1, 1000)),
    ("cifar10", "vgg16"): dict(
        md_tanh_s=(1e-3, 0.2, 1.2, 2000), md_softmax_s=(1e-3, 0.3, 1.2, 2000),
        md_tanh=(1e-3, 0.3, 1.1, 1000), md_softmax=(1e-2, 0.2, 1.05, 500),
        pmf=(1e-3, 0.5, 1.05, 500)),
    ("cifar100", "resnet18"): dict(
        md_tanh_s=(1e-3, 0.2, 1.2, 500), md_softmax_s=(1e-3, 0.2, 1.1, 200),
        md_tanh=(1e-3, 0.3, 1.05, 500), md_softmax=(1e-3, 0.2, 1.05, 500),
        pmf=(1e-3, 0.3, 1.01, 100)),
    ("cifar100", "vgg16"): dict(
        md_tanh_s=(1e-3, 0.5, 1.05, 500), md_softmax_s=(1e-4, 0.2, 1.2, 500),
        md_tanh=(1e-3, 0.3, 1.05, 500), md_softmax=(1e-4, 0.3, 1.01, 100),
        pmf=(1e-4, 0.5, 1.02, 200)),
    ("tiny_imagenet", "resnet18"): dict(
        md_tanh_s=(1e-3, 0.1, 1.2, 500), md_softmax_s=(1e-3, 0.1, 1.02, 100),
        md_tanh=(1e-3, 0.5, 1.2, 2000), md_softmax=(1e-3, 0.2, 1.02, 200),
        pmf=(1e-3, 0.5, 1.01, 100)),
}

# config.method options under which each method runs the official code's rules (see above)
OFFICIAL_OPTIONS = dict(
    md_tanh_s={}, md_tanh=dict(dual_step="md_bnn"),
    md_softmax_s=dict(logit_init="xavier_wide"),
    md_softmax=dict(dual_step="md_bnn", logit_init="xavier_wide"),
    pmf=dict(jacobian="pmf_code", logit_init="xavier_wide"))
_BETA_MAX = dict(md_tanh_s=1e35, md_softmax_s=1e35, md_tanh=1e35, md_softmax=1e35, pmf=1e4)
_WEIGHT_DECAY = dict(pmf=1e-4)


def config(method: str, dataset: str, net: str):
    """The config of one table cell: `method` in METHODS, `dataset` in DATASETS, `net` in NETS."""
    if (dataset, net) not in TABLE or method not in TABLE[(dataset, net)]:
        raise ValueError(f"no MD/PMF table cell for ({method!r}, {dataset!r}, {net!r}); cells: "
                         f"methods {METHODS} x {sorted(TABLE)}.")
    lr, lrs, bts, bti = TABLE[(dataset, net)][method]
    c = base_config()
    name = TINY_IMAGENET_DEFAULT if dataset == "tiny_imagenet" else dataset
    if dataset == "tiny_imagenet":  # the code's protocol: all 100k, select on val (= test)
        c.dataset.update(name=name, validation=0, validation_is_test=True)
    else:
        c.dataset.update(name=name, validation=5_000)
    c.model.update(name=net, affine_bn=False, init="xavier_uniform")
    if net == "resnet18":
        c.model.update(stem="cifar", stem_stride=2 if dataset == "tiny_imagenet" else 1)
    else:
        c.model.update(use_bias=True)  # md-bnn / pmf VGG: biased convs and fc1/fc2
        if dataset == "tiny_imagenet":
            c.model.update(stem_stride=2)
    c.method = dict(name=method, levels=2, bts=bts, bti=bti, beta_max=_BETA_MAX[method],
                    **OFFICIAL_OPTIONS[method])
    c.quant.update(include=(".*",), exclude=())
    c.optimizer.update(name="adam", lr=lr, b1=0.9, b2=0.999, eps=1e-8,
                       weight_decay=_WEIGHT_DECAY.get(method, 0.0))
    c.schedule.update(kind="piecewise", unit="step", every=30_000, factor=lrs)
    c.train.update(batch_size=128, steps=100_000, eval_every_steps=100, select_best=True,
                   log_every_steps=100, checkpoint_every_steps=5_000)
    return c
