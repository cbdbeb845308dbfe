"""DoReFa weights with STE, ResNet-20 on CIFAR-10: MetaQuant's "dorefa / STE" baseline (Table 1).

MetaQuant (Chen et al., NeurIPS'19) recipe, as its released train_baseline_quant.py runs
it: every conv and the fc quantized (first and last included), Adam 1e-3 without weight
decay (or plain SGD 1e-3: --config.optimizer.name=sgd), x0.1 every 30 epochs, 100 epochs,
batch 128, warm start from a full-precision ResNet-20 (train
`configs/fp_cifar10_resnet20.py` into runs/fp_cifar10_resnet20 first, or pass
--config.init_checkpoint= to start from scratch). Table 1 reports 89.78% (1 bit, Adam)
and 80.75% (SGD), the mean test accuracy of the last 10 epochs over 5 runs.

As in MetaQuant's utils/quantize.py: levels unscaled at 1 bit (±1), no gradient through
max|tanh W| (detach_max), and at 1 bit the gradient of the k-bit formula,
(1 - tanh² W) / max|tanh W| (one_bit_backward='tanh'), not DoReFa's straight-through
sign (the library default, one_bit_backward='identity'): the released code quantizes
2 round(W̃) - 1 with the STE through the rounding only, at every bit width.

Bit widths: --config.method.weight_bits=1|2|4. DoReFa's own rules:
--config.method.one_bit_scale=True --config.method.detach_max=False
--config.method.one_bit_backward=identity; quantized activations:
--config.model.act_bits=k (q_k(clip(x, 0, 1)) at quantized conv inputs).
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="cifar10")
    c.model.update(name="resnet20", shortcut="B", act_bits=0)
    c.method = dict(name="dorefa", weight_bits=1, one_bit_scale=False, detach_max=True,
                    one_bit_backward="tanh")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="piecewise", unit="epoch", every=30, factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000)
    c.init_checkpoint = "runs/fp_cifar10_resnet20"
    return c
