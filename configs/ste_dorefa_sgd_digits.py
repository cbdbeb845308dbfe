"""STE twin of `metaquant_dorefa_sgd_digits.py`: 1-bit dorefa weights, MetaQuant's STE, same budget.

Same MLP, quantized leaves, SGD lr, schedule and epochs as the MetaQuant config, with
MetaQuant's unscaled ±1 levels, detached max and the STE of its released
utils/quantize.py: d/dW = (1 - tanh² W) / max|tanh W| also at 1 bit
(one_bit_backward='tanh'; DoReFa's identity through sign is
--config.method.one_bit_backward=identity). The pair is MetaQuant's STE-vs-meta
comparison (Table 1) at CPU size.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.method = dict(name="dorefa", weight_bits=1, one_bit_scale=False, detach_max=True,
                    one_bit_backward="tanh")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="sgd", lr=0.5)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=64, epochs=15, log_every_steps=22)
    return c
