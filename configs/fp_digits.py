"""Full-precision MLP on scikit-learn's digits: the embedded quickstart (< 1 min on CPU)."""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.model.update(name="mlp", features=(256, 256))
    c.optimizer.update(name="adam", lr=3e-3)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=64, epochs=30, log_every_steps=22, eval_every_steps=110)
    return c
