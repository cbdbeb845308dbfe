"""MetaQuant Table 1 cell: ResNet-20 CIFAR-10, 1-bit dorefa, adam, lstmfc (recipe: metaquant_cifar.py)."""
import os, runpy  # noqa: E401


def get_config():
    table = runpy.run_path(os.path.join(os.path.dirname(__file__), "metaquant_cifar.py"))
    return table["get_config"]("resnet20,dorefa,adam,lstmfc")
