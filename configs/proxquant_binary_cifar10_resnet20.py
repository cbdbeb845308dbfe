"""PQ-binary, ResNet-20 on CIFAR-10 (ProxQuant, ICLR'19; hyperparameters in proxquant_cifar10.py)."""
import os, runpy  # noqa: E401


def get_config():
    return runpy.run_path(os.path.join(os.path.dirname(__file__), "proxquant_cifar10.py"))["get_config"]("pq_binary,20")
