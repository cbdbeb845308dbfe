"""ProxQuant's CIFAR-10 ResNet table (Bai et al., ICLR'19): every cell's hyperparameters in one place.

`get_config("<variant>,<depth>")`, variant in pq_binary | pq_ternary | bc, depth in
20 | 32 | 44 | 56 (also usable directly: --config configs/proxquant_cifar10.py:pq_ternary,32;
the proxquant_{binary,ternary,bc}_cifar10_resnetN.py files are these cells). From the
official code's scripts (scripts/train-cifar10-*.sh) and METHODS.md section 2:

- model resnetN with option-B shortcuts (1x1 conv + BN), warm start from the
  full-precision run of configs/fp_cifar10_resnetN.py in runs/fp_cifar10_resnetN, trained
  with --config.dataset.normalization=imagenet as these cells are (launch/proxquant.sh);
- Adam (0.9, 0.999, 1e-8), no weight decay, 300 epochs, freeze at epoch 200, batch 128;
- pq_binary: eager prox, lr 0.01 constant, reg_rate 1e-4 (lambda_t = 1e-4 * epoch);
- pq_ternary: eager ternary (TWN) prox, 600 epochs, freeze at 400, batch 256 (the
  script leaves the code's default batch size, 256);
- bc: lazy projection (BinaryConnect, identity STE, latents clipped to [-1, 1]),
  lr 1e-2, x0.1 at epochs 81 and 122 (the code's --binary_regime), freeze at 200.
- Quantized: binary - every parameter except BatchNorm, the 1x1 shortcut convs and the
  fc bias (first conv and fc weight binarized); ternary - the first conv (`stem`) and the
  fc (`head`) also stay full precision.
- The final test accuracy of the hard-quantized network is reported (the paper reports
  the mean of 4 runs); the code evaluates on the test set every epoch.

Where the official code differs from the paper's description, these cells follow the code
(it produced the table; docs/fidelity.md#proxquant lists every difference):
- `reset_optimizer_every_epoch=True`: the code's `utils.adjust_optimizer` rebuilds Adam at
  the start of every epoch (moments and bias correction restart, so the first step of an
  epoch moves every latent with a non-zero gradient by ~lr), PQ and BC alike. The library
  default (False) is the plain Adam the paper describes.
- `dataset.normalization='imagenet'`: the code's `preprocess.get_transform` normalises
  CIFAR-10 with ImageNet's mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225); the
  full-precision warm start (launch/proxquant.sh) uses the same, so the weights match.
- `by_row=False`: the code's multi-bit prox is per tensor by default (only read with
  --config.method.kind=multibit; the paper's CIFAR cells are binary and ternary).
"""
from jaxquant.config import base_config
from jaxquant.methods.proxquant import DEFAULTS

BINARY_EXCLUDE = ("(.*/)?bn[^/]*/.*", "(.*/)?shortcut/.*", "head/bias")
TERNARY_EXCLUDE = ("(.*/)?bn[^/]*/.*", "(.*/)?shortcut/.*", "stem/.*", "head/.*")
DEPTHS = (20, 32, 44, 56)
VARIANTS = {
    #            kind       mode    epochs freeze batch lr boundaries (epochs)
    "pq_binary": ("binary", "prox", 300, 200, 128, ()),
    "pq_ternary": ("ternary", "prox", 600, 400, 256, ()),
    "bc": ("binary", "lazy", 300, 200, 128, (81, 122)),
}


def get_config(arg: str = "pq_binary,20"):
    variant, depth = arg.split(",")
    depth = int(depth)
    if variant not in VARIANTS or depth not in DEPTHS:
        raise ValueError(f"proxquant_cifar10.py:<variant>,<depth> takes variant in "
                         f"{', '.join(VARIANTS)} and depth in {DEPTHS}; got {arg!r}.")
    kind, mode, epochs, freeze, batch, boundaries = VARIANTS[variant]
    c = base_config()
    c.dataset.update(name="cifar10", normalization="imagenet")
    c.model.update(name=f"resnet{depth}", shortcut="B")
    c.method = dict(name="proxquant", **DEFAULTS["proxquant"])  # every key, so each can be overridden
    c.method.update(kind=kind, projection_mode=mode, reg_rate=1e-4, freeze_epoch=freeze,
                    reset_optimizer_every_epoch=True, by_row=False)
    c.quant.update(include=(".*",), exclude=TERNARY_EXCLUDE if kind == "ternary" else BINARY_EXCLUDE)
    c.optimizer.update(name="adam", lr=1e-2, weight_decay=0.0)
    if boundaries:
        c.schedule.update(kind="piecewise", unit="epoch", boundaries=boundaries, factor=0.1)
    c.train.update(batch_size=batch, epochs=epochs, eval_batch_size=1000)
    c.init_checkpoint = f"runs/fp_cifar10_resnet{depth}"
    return c
