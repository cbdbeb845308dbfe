"""MetaQuant, 1-bit dorefa forward with the FC-Grad meta net and Adam, ResNet-18 on ImageNet
from torchvision's pretrained weights (Chen et al., NeurIPS'19).

Paper, ImageNet ResNet-18 with Adam, top-1: FC-Grad 59.84 (dorefa STE 58.35,
MultiFC 59.47; BWN STE 59.50, BWN FC-Grad 60.33). Every conv and the fc binary
(first and last included), BatchNorm and the fc bias in full precision. The
released code's recipe: base lr 1e-3 (Adam, weight decay 5e-4), meta net hidden
100 trained by Adam 1e-3, x0.1 every 30 epochs, batch 128; the number of
ImageNet epochs is not stated there, the CIFAR recipe's 100 is kept.
Other meta nets: --config.method.meta_net=multifc|lstmfc; BWN forward:
--config.method.forward=bwn. Step rule: variant='released' (the released
meta-quantize.py's, one step out of sync; the library default 'paper' is eq. 6 / Alg. 1);
the released code has no ImageNet script (docs/fidelity.md, MetaQuant).

Weights: torchvision's resnet18 IMAGENET1K_V1 (69.76% top-1), converted once with
    python -m jaxquant.convert --from resnet18.pth --model resnet18 --out runs/torchvision_resnet18
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="imagenet2012")
    c.model.update(name="resnet18", stem="imagenet")
    c.method = dict(name="metaquant", forward="dorefa", bits=1, meta_net="fcgrad", meta_lr=1e-3,
                    hidden=100, variant="released")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-3, weight_decay=5e-4)
    c.schedule.update(kind="piecewise", unit="epoch", every=30, factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=500, log_every_steps=100)
    c.init_checkpoint = "runs/torchvision_resnet18"
    return c
