"""Full-precision CIFAR-10 ResNet-44: fp_cifar10_resnet20.py's recipe (the ProxQuant warm start)."""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "fp_cifar10_resnet20.py"))["get_config"]()
    c.model.name = "resnet44"
    return c
