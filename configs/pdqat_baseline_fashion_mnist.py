"""PD-QAT's baseline (con-qat train_anyprec.py: CE(f^32) + CE_soft(f^b, sg softmax f^32)) for the
PD-QAT CPU runs, 2-bit ResNet-8q on Fashion-MNIST (jaxquant.papers.pdqat)."""
from jaxquant.papers.pdqat import pdqat_fashion_mnist


def get_config():
    return pdqat_fashion_mnist(2, "baseline")
