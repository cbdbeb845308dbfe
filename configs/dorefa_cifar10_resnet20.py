"""DoReFa weights with STE, ResNet-20 on CIFAR-10: MetaQuant's "dorefa / STE" baseline (Table 1).

MetaQuant (Chen et al., NeurIPS'19) recipe: every conv and the fc quantized (first and
last included), Adam 1e-3, x0.1 every 30 epochs, 100 epochs, batch 128, warm start
from a full-precision ResNet-20 (train `configs/fp_cifar10_resnet20.py` into
runs/fp_cifar10_resnet20 first, or pass --config.init_checkpoint= to start from
scratch). As in MetaQuant's dorefa forward, levels are unscaled at 1 bit (±1) and
the gradient does not flow through max|tanh W|; Table 1 reports 89.78% (1 bit, Adam).

Bit widths: --config.method.weight_bits=1|2|4. DoReFa's own rules:
--config.method.one_bit_scale=True --config.method.detach_max=False; quantized
activations: --config.model.act_bits=k (q_k(clip(x, 0, 1)) at quantized conv inputs).
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="cifar10")
    c.model.update(name="resnet20", shortcut="B", act_bits=0)
    c.method = dict(name="dorefa", weight_bits=1, one_bit_scale=False, detach_max=True)
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="piecewise", unit="epoch", every=30, factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000)
    c.init_checkpoint = "runs/fp_cifar10_resnet20"
    return c
