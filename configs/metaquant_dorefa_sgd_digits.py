"""MetaQuant (Chen et al., NeurIPS'19), 1-bit dorefa forward, SGD base optimizer, MLP on digits.

A CPU-sized check of the method (< 1 min): every dense kernel binary (±1), BN and
biases full precision, MultiFC meta net (hidden 100, Adam 1e-3), trained from
scratch, with the released code's step rule (variant='released', as Table 1; the
library default 'paper' is eq. 6 / Alg. 1). The paper's CIFAR recipe (base lr 1e-3
from a full-precision checkpoint) is in `metaquant_cifar.py`; from scratch on digits
the base SGD lr is larger. Its STE twin with the same budget: `ste_dorefa_sgd_digits.py`.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.method = dict(name="metaquant", forward="dorefa", bits=1, meta_net="multifc",
                    meta_lr=1e-3, hidden=100, variant="released")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="sgd", lr=0.5)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=64, epochs=15, log_every_steps=22)
    return c
