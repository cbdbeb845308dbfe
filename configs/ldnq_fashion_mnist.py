"""L-DNQ, 3-level LeNet-5 on Fashion-MNIST from 1% of the train set (600 images).

Quantizes the full-precision run of `configs/fp_fashion_mnist.py` (train it into
runs/fp_fashion_mnist first; same 5k validation split, so the same model and data).
"""
from jaxquant.ptq.ldnq import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5")
    c.ldnq.update(levels=3, data_fraction=0.01)
    c.init_checkpoint = "runs/fp_fashion_mnist"
    return c
