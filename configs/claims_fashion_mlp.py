"""Fashion-MNIST MLP 784-256-256-10, the shared base of the CPU claims table (bench/claims.py).

Full precision as written; `python -m jaxquant.compare` swaps in each method's preset,
so every method of a claim gets this model, data, protocol and budget: BN after each
hidden layer (affine), every dense kernel quantized (biases and BN full precision),
Adam 1e-3 with cosine decay, batch 128, 10 epochs (4,290 steps), test accuracy at the
step of best accuracy on a 5k validation split (evaluated every epoch). The `ldnq`
section is there for the L-DNQ presets (`ldnq:ldnq.levels=5`; 1% of the train split,
the paper's setting); training methods ignore it.
"""
from jaxquant.config import base_config
from jaxquant.ptq.ldnq import default_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="mlp", features=(256, 256))
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=128, epochs=10, select_best=True)
    c.ldnq = default_config()
    return c
