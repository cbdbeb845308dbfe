"""PD-QAT's Table 1 recipes (Hounie et al., ICASSP'23), shared by the pdqat config files.

A config file for one table cell is then three lines, e.g. `configs/pdqat_cifar10_b4_layerwise.py`:
`def get_config(): return pdqat_cifar10(4, "layerwise")`. The constraint levels
come from `jaxquant.methods.pdqat.PAPER_EPS_OUT` / `PAPER_EPS_LAYER` (the one table).

Every cell runs what con-qat ran (docs/fidelity.md, PD-QAT): PyTorch's default init,
the dual update from an eval-mode pass over the training split after each epoch, a
block's first conv compared after its BatchNorm on the low-precision side, and the
second conv's / shortcut's low-precision outputs detached in the layer-wise constraints.
The baseline column is PD-QAT's own two baseline scripts (`BASELINE_SEEDS`), not plain
DoReFa: `jaxquant.methods.pdqat.BASELINES`.
"""
from __future__ import annotations

import ml_collections

from jaxquant.config import base_config

CONSTRAINTS = ("baseline", "output", "layerwise")
# con-qat's baseline column (final_table.ipynb, W&B project QSVanilla, seeds 0-5): seeds
# 0-2 came from train_anyprec.py, seeds 3-5 from train_vanilla.py --vanilla.
BASELINE_SEEDS = {"anyprec": (0, 1, 2), "vanilla": (3, 4, 5)}
# con-qat's behaviour in the primal-dual cells (each a `config.method` key of pdqat).
CODE_DETAILS = dict(dual_update="epoch_eval", zb_after_bn=True,
                    detach_low_outputs=(r".*/conv2", r".*/shortcut"))


def baseline_for_seed(seed: int) -> str:
    """The baseline script con-qat ran for `seed`: 'anyprec' for 0-2, 'vanilla' otherwise."""
    return "anyprec" if seed in BASELINE_SEEDS["anyprec"] else "vanilla"


def pdqat_method(bits: int, constraint: str, baseline: str = "anyprec") -> dict:
    """`config.method` of a Table-1 cell: PD-QAT's baseline ('baseline': `baseline` =
    'anyprec' or 'vanilla'), or PD-QAT with the output constraint ('output') or output +
    layer-wise constraints ('layerwise') at the paper's eps for `bits`; dual step 0.01
    after each epoch from an eval-mode pass (con-qat); con-qat's gradient routing."""
    from jaxquant.methods.pdqat import BASELINES, PAPER_EPS_LAYER, PAPER_EPS_OUT
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}; got {constraint!r}.")
    if constraint == "baseline":
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}; got {baseline!r}.")
        return dict(name="pdqat", bits=bits, baseline=baseline)
    return dict(name="pdqat", bits=bits, eps_out=PAPER_EPS_OUT[bits],
                layerwise=constraint == "layerwise", eps_layer=PAPER_EPS_LAYER[bits],
                dual_lr=0.01, routing="high", detach_target=False, fp_weights="tanh",
                **CODE_DETAILS)


def pdqat_cifar10(bits: int, constraint: str, baseline: str = "anyprec") -> ml_collections.ConfigDict:
    """PD-QAT Table 1: ResNet-20q (widths 80/160/320) on CIFAR-10 from scratch, 45k/5k split,
    Adam 1e-3 (no weight decay), x0.1 at epochs 50/75/90, 100 epochs, batch 128; b-bit
    weights and activations, `stem` and `head` full precision, PyTorch's default init;
    the test accuracy at the epoch of best (low-precision) validation accuracy, as
    con-qat's final_table.ipynb reads it."""
    c = base_config()
    c.dataset.update(name="cifar10", validation=5_000)
    c.model.update(name="resnet20q", depth=20, expand=5, act_bits=bits, switchable_bn=True,
                   init="torch")
    c.method = pdqat_method(bits, constraint, baseline)
    c.quant.update(include=[".*kernel"], exclude=["stem/.*", "head/.*"])
    c.optimizer.update(name="adam", lr=1e-3, weight_decay=0.0)
    c.schedule.update(kind="piecewise", unit="epoch", boundaries=[50, 75, 90], factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000, select_best=True)
    return c


def pdqat_mixed_cifar10(fp_layers: str) -> ml_collections.ConfigDict:
    """PD-QAT's mixed-precision runs (Fig. 1; con-qat `retrain` branch,
    scripts/layer_selection/{best,worst}_<k>_bw_1.sh -> train_pd_layers_selec.py): 1-bit
    PD-QAT with the output constraint at that script's default eps_out = 0.1 (the
    scripts pass none), the layers `fp_layers` (config.quant.full_precision_layers, e.g.
    'top:2:<ranking run>') at 32 bits with unquantized inputs; the figure reads the
    final-epoch test accuracy."""
    c = pdqat_cifar10(1, "output")
    c.method.eps_out = 0.1
    c.quant.full_precision_layers = fp_layers
    c.train.select_best = False
    return c


def pdqat_fashion_mnist(bits: int, constraint: str, baseline: str = "anyprec") -> ml_collections.ConfigDict:
    """A CPU-sized PD-QAT run: ResNet-8q (depth 8, widths 16/32/64) on Fashion-MNIST,
    55k/5k split, Adam 1e-3, x0.1 at epoch 4, 5 epochs, batch 128."""
    c = pdqat_cifar10(bits, constraint, baseline)
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(depth=8, expand=1)
    c.schedule.update(boundaries=[4])
    c.train.update(epochs=5)
    return c
