"""L-DNQ, 3-level ResNet-56 on CIFAR-10 from 1% of the train set (Chen et al., AAAI'19).

Paper: 89.17% (full precision 92.66%). Quantizes every conv and the fc (first and last
included, the fc bias with its kernel) layer by layer, 500 random train images,
cascade SGD 1e-3 / momentum 0.9 / wd 5e-4 after each layer. Train the FP model first,
with the code's weight decay (train_base_model.py: 5e-4):
`python -m jaxquant.main --config configs/fp_cifar10_resnet20.py --config.model.name=resnet56
--config.optimizer.weight_decay=5e-4 --workdir runs/fp_cifar10_resnet56` (option-B shortcuts,
as the L-DNQ code's ResNets). Other codebooks: --config.ldnq.levels=5|7|9|11.

As the official code ran it (`jaxquant.ptq.ldnq.official_code`): its permuted, "SAME"-padded
H (`ldnq.hessian_order='official'`), the fc bias retrained in the last cascade step
(`ldnq.cascade_own_bias=True`), H from 202 images per layer. The consistent H (the
algorithm as the paper states it): --config.ldnq.hessian_order=consistent.
"""
from jaxquant.ptq.ldnq import cifar10_config


def get_config():
    return cifar10_config("resnet56")
