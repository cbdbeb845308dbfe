"""L-DNQ, 3-level ResNet-34 on ImageNet from torchvision's pretrained weights (Chen et al., AAAI'19).

Paper (3 levels), top-1 / top-5: 43.99 / 73.05; full precision 73.30 / 91.42.
Every conv and the fc quantized (first and last included, biases with their
kernels, BatchNorm in full precision), from a random 1% of the train split
(12,811 images); after each layer a cascade fine-tune with SGD 1e-3, momentum
0.9, weight decay 5e-4, batches of 128. Other codebooks: --config.ldnq.levels=5|7|9|11.

Weights: torchvision's resnet34 IMAGENET1K_V1 (the checkpoint the L-DNQ README
starts from), converted once with
    python -m jaxquant.convert --from resnet34.pth --model resnet34 --out runs/torchvision_resnet34
(`.safetensors` works without torch; see jaxquant/convert.py).

As the official code ran it (`jaxquant.ptq.ldnq.official_code`): its permuted, "SAME"-padded
H (`ldnq.hessian_order='official'`; here the 7x7/2 stem and the 3x3/2 convs are padded
differently from the layers themselves), the fc bias retrained in the last cascade step
(`ldnq.cascade_own_bias=True`), H from 202 images per layer. The consistent H:
--config.ldnq.hessian_order=consistent.
"""
from jaxquant.ptq.ldnq import imagenet_config


def get_config():
    return imagenet_config("resnet34")
