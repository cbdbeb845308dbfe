"""BWN (alpha sign(W), alpha = mean|W| per tensor) with STE, ResNet-20 on CIFAR-10.

MetaQuant's "BWN / STE" baseline (Table 1: 89.90% with Adam, 75.91% with SGD, mean test
accuracy of the last 10 epochs over 5 runs), as its released train_baseline_quant.py runs
it: every conv and the fc quantized, Adam 1e-3 without weight decay (or plain SGD 1e-3:
--config.optimizer.name=sgd), x0.1 every 30 epochs, 100 epochs, batch 128, warm start
from a full-precision ResNet-20 (train `configs/fp_cifar10_resnet20.py` into
runs/fp_cifar10_resnet20 first, or pass --config.init_checkpoint= to start from scratch).

Gradient: MetaQuant's utils/quantize.py, d/dW = alpha 1{|W| <= 1} with alpha = mean|W|
detached (backward='alpha_gated': the hard-tanh STE through sign, scaled by alpha), not
the library default identity STE (backward='identity'), whose SGD steps are ~1/alpha
times larger. --config.method.backward=identity runs the default.
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="cifar10")
    c.model.update(name="resnet20", shortcut="B")
    c.method = dict(name="bwn", backward="alpha_gated")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="piecewise", unit="epoch", every=30, factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000)
    c.init_checkpoint = "runs/fp_cifar10_resnet20"
    return c
