"""MD-tanh-S (Ajanthan et al., AISTATS'21), binary MLP on scikit-learn's digits (< 1 min on CPU).

Every tensor (first and last layer, biases included) is binary {-1, +1}; BatchNorm
non-affine; xavier-uniform init, Adam, beta_t = bts^ceil(t/bti) capped at 1e35 —
the paper's protocol, scaled down to 330 steps: bts 1.2 every 10 steps (beta_end ~ 400).
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256), affine_bn=False, init="xavier_uniform")
    c.method = dict(name="md_tanh_s", levels=2, bts=1.2, bti=10, beta_max=1e35)
    c.quant.update(include=(".*",))
    c.optimizer.update(name="adam", lr=1e-2)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=64, epochs=15, log_every_steps=20)
    return c
