"""L-DNQ, 3-level MLP on scikit-learn's digits: the CPU quickstart of post-training quantization.

Quantizes the full-precision run of `configs/fp_digits.py` (train it into
runs/fp_digits first). Digits has 1437 train images, so 10% (143 images) stands
in for the paper's 1%; cascade batches of 32 (the paper: 128 of 500 CIFAR images).
"""
from jaxquant.ptq.ldnq import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.ldnq.update(levels=3, data_fraction=0.1, batch_size=32, cascade_max_epochs=200)
    c.init_checkpoint = "runs/fp_digits"
    return c
