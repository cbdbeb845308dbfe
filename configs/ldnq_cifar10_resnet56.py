"""L-DNQ, 3-level ResNet-56 on CIFAR-10 from 1% of the train set (Chen et al., AAAI'19).

Paper: 89.17% (full precision 92.66%). Quantizes every conv and the fc (first and last
included, the fc bias with its kernel) layer by layer, 500 random train images,
cascade SGD 1e-3 / momentum 0.9 / wd 5e-4 after each layer. Train the FP model first:
`python -m jaxquant.main --config configs/fp_cifar10_resnet20.py --config.model.name=resnet56
--workdir runs/fp_cifar10_resnet56` (option-B shortcuts, as the L-DNQ code's ResNets).
Other codebooks: --config.ldnq.levels=5|7|9|11.
"""
from jaxquant.ptq.ldnq import cifar10_config


def get_config():
    return cifar10_config("resnet56")
