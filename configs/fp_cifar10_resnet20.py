"""Full-precision CIFAR-10 ResNet-20 (He et al. 2016 recipe; the ProxQuant/L-DNQ warm start).

SGD 0.1, momentum 0.9, weight decay 1e-4, x0.1 at epochs 100 and 150, 200 epochs,
option-B shortcuts as in the ProxQuant code. Use `--config.model.name=resnet32` etc.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="cifar10")
    c.model.update(name="resnet20", shortcut="B")
    c.optimizer.update(name="momentum", lr=0.1, momentum=0.9, weight_decay=1e-4)
    c.schedule.update(kind="piecewise", unit="epoch", boundaries=[100, 150], factor=0.1)
    c.train.update(batch_size=128, epochs=200, eval_batch_size=1000)
    return c
