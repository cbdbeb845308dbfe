"""Full-precision CIFAR-10 ResNet-18 (md-bnn/pmf reference: SGD 0.1, momentum 0.9, wd 5e-4)."""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="cifar10", validation=5_000)
    c.model.update(name="resnet18", stem="cifar")
    c.optimizer.update(name="momentum", lr=0.1, momentum=0.9, weight_decay=5e-4)
    c.schedule.update(kind="cosine")
    c.train.update(batch_size=128, epochs=200, select_best=True)
    return c
