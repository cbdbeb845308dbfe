"""BinaryConnect, binary LeNet-5 on Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist).

Every conv/dense kernel (first and last included) is binary {-1, +1}; biases and BN
stay full precision. md-bnn's BinaryConnect (hard-tanh-gated STE, no latent
clipping); `--config.method.variant=proxquant` for ProxQuant's lazy projection
(identity STE, latents clipped to [-1, 1]). Adam 1e-2, x0.1 at epochs 20 and 25: ProxQuant's
BC schedule (1e-2 -> 1e-3 at epoch 81 -> 1e-4 at 122) scaled to 30 epochs.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5")
    c.method = dict(name="binary_connect", variant="md_bnn")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-2)
    c.schedule.update(kind="piecewise", unit="epoch", boundaries=[20, 25], factor=0.1)
    c.train.update(batch_size=128, epochs=30, select_best=True)
    return c
