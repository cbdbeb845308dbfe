"""BinaryConnect, binary MLP on scikit-learn's digits: the embedded binary quickstart (< 1 min on CPU).

Every dense kernel (first and last included) is binary {-1, +1}; biases and BN stay
full precision. md-bnn's BinaryConnect (hard-tanh-gated STE, no latent clipping);
`--config.method.variant=proxquant` for ProxQuant's lazy projection.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.method = dict(name="binary_connect", variant="md_bnn")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-2)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=64, epochs=15, log_every_steps=20)
    return c
