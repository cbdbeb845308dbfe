"""Full-precision LeNet-5 on Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist)."""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5")
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=128, epochs=10, select_best=True)
    return c
