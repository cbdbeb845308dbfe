"""PD-QAT's Table 1 recipes (Hounie et al., ICASSP'23), shared by the pdqat config files.

A config file for one table cell is then three lines, e.g. `configs/pdqat_cifar10_b4_layerwise.py`:
`def get_config(): return pdqat_cifar10(4, "layerwise")`. The constraint levels
come from `jaxquant.methods.pdqat.PAPER_EPS_OUT` / `PAPER_EPS_LAYER` (the one table).
"""
from __future__ import annotations

import ml_collections

from jaxquant.config import base_config

CONSTRAINTS = ("baseline", "output", "layerwise")


def pdqat_method(bits: int, constraint: str) -> dict:
    """`config.method` of a Table-1 cell: DoReFa STE QAT ('baseline') or PD-QAT with the
    output constraint ('output') or output + layer-wise constraints ('layerwise') at the
    paper's eps for `bits`; dual step 0.01, once per epoch; con-qat's gradient routing."""
    from jaxquant.methods.pdqat import PAPER_EPS_LAYER, PAPER_EPS_OUT
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}; got {constraint!r}.")
    if constraint == "baseline":
        return dict(name="dorefa", weight_bits=bits, one_bit_scale=True, detach_max=False)
    return dict(name="pdqat", bits=bits, eps_out=PAPER_EPS_OUT[bits],
                layerwise=constraint == "layerwise", eps_layer=PAPER_EPS_LAYER[bits],
                dual_lr=0.01, dual_update="epoch", routing="high", detach_target=False,
                fp_weights="tanh")


def pdqat_cifar10(bits: int, constraint: str) -> ml_collections.ConfigDict:
    """PD-QAT Table 1: ResNet-20q (widths 80/160/320) on CIFAR-10 from scratch, 45k/5k split,
    Adam 1e-3 (no weight decay), x0.1 at epochs 50/75/90, 100 epochs, batch 128; b-bit
    weights and activations, `stem` and `head` full precision."""
    c = base_config()
    c.dataset.update(name="cifar10", validation=5_000)
    c.model.update(name="resnet20q", depth=20, expand=5, act_bits=bits,
                   switchable_bn=constraint != "baseline")
    c.method = pdqat_method(bits, constraint)
    c.quant.update(include=[".*kernel"], exclude=["stem/.*", "head/.*"])
    c.optimizer.update(name="adam", lr=1e-3, weight_decay=0.0)
    c.schedule.update(kind="piecewise", unit="epoch", boundaries=[50, 75, 90], factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000, select_best=True)
    return c


def pdqat_fashion_mnist(bits: int, constraint: str) -> ml_collections.ConfigDict:
    """A CPU-sized PD-QAT run: ResNet-8q (depth 8, widths 16/32/64) on Fashion-MNIST,
    55k/5k split, Adam 1e-3, x0.1 at epoch 4, 5 epochs, batch 128."""
    c = pdqat_cifar10(bits, constraint)
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(depth=8, expand=1)
    c.schedule.update(boundaries=[4])
    c.train.update(epochs=5)
    return c
