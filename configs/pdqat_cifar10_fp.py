"""Full-precision ResNet-20q on CIFAR-10: PD-QAT Table 1's 32-bit row (clip(x, 0, 1) nonlinearity)."""
from jaxquant.papers.pdqat import pdqat_cifar10


def get_config():
    c = pdqat_cifar10(8, "baseline")
    c.model.act_bits = 0
    c.method = dict(name="fp")
    return c
