"""Full-precision ResNet-20q on CIFAR-10: PD-QAT Table 1's 32-bit row (clip(x, 0, 1) nonlinearity).

con-qat produced that row with its baseline scripts at the bit list (32, 32), i.e. with its
32-bit weight map E tanh(W) / max|tanh W|; this config trains W itself with cross-entropy
(docs/fidelity.md, PD-QAT)."""
from jaxquant.papers.pdqat import pdqat_cifar10


def get_config():
    c = pdqat_cifar10(8, "baseline")
    c.model.act_bits = 0
    c.method = dict(name="fp")
    return c
