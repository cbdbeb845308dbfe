"""PQ-binary (ProxQuant, Bai et al., ICLR'19), binary MLP on scikit-learn's digits (< 1 min on CPU).

Every dense kernel (first and last included) is binary {-1, +1}; biases and BN stay full
precision. Eager binary prox after each Adam step, s_t = lr * reg_rate * epoch, latents
clipped to [-1, 1]; from epoch `freeze_epoch` the kernels are sign(theta) and frozen while
BN and biases keep training. The paper's reg_rate (1e-4 over 200 epochs of 390 steps) is
scaled to this run's 22 steps per epoch and 12 epochs before the freeze. Trained from
scratch (the paper warm-starts from full precision: --config.init_checkpoint=runs/fp_digits).
Measured: 96.85 ± 0.58% test accuracy over seeds 0-2 (96.39, 97.50, 96.67; `--config.seed=k`;
`python bench/readme_numbers.py --only digits`, recorded in bench/results/readme_numbers.json).
"""
from jaxquant.config import base_config
from jaxquant.methods.proxquant import DEFAULTS


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.method = dict(name="proxquant", **DEFAULTS["proxquant"])
    c.method.update(kind="binary", projection_mode="prox", reg_rate=0.5, freeze_epoch=12)
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-2)
    c.train.update(batch_size=64, epochs=15, log_every_steps=22, eval_every_steps=110)
    return c
