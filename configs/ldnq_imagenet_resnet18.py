"""L-DNQ, 3-level ResNet-18 on ImageNet from 1% of the train set (12,811 images; Chen et al., AAAI'19).

Paper: top-1 / top-5 45.98 / 75.73 (full precision 69.76 / 89.02); with 9 levels
(--config.ldnq.levels=9) it loses 2.73 top-1. Every conv and the fc quantized
(first and last included), cascade SGD 1e-3 / momentum 0.9 / wd 5e-4 after each
layer, batches of 128.

Model: jaxquant's ResNet-18 with the ImageNet stem (7x7/2 + max-pool); the FP
checkpoint must be a run of this model (runs/fp_imagenet_resnet18). A torchvision-
style ImageNet ResNet and a converter for torchvision's pretrained weights are being
added separately; point init_checkpoint at such a run once they exist.
"""
from jaxquant.ptq.ldnq import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="imagenet2012")
    c.model.update(name="resnet18", stem="imagenet")
    c.train.update(eval_batch_size=500)
    c.init_checkpoint = "runs/fp_imagenet_resnet18"
    return c
