"""PMF (Ajanthan et al., ICCV'19), binary LeNet-5 on Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist).

The paper protocol at CPU size: every tensor binary (first/last layer, biases), BN
non-affine, xavier-uniform init, Adam 1e-3, weight decay 1e-4, lr x0.3 every 6 epochs of 20 (the
paper's 30k of 100k), beta_t = 1.1^ceil(t/100) capped at 1e4, rounded net evaluated on
a 5k validation split every 200 steps, best reported on test; the pmf repo's rules
(`jacobian='pmf_code'`, `logit_init='xavier_wide'`, as the PMF table configs).
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5", affine_bn=False, init="xavier_uniform")
    c.method = dict(name="pmf", levels=2, bts=1.1, bti=100, beta_max=1e4, jacobian="pmf_code",
                    logit_init="xavier_wide")
    c.quant.update(include=(".*",))
    c.optimizer.update(name="adam", lr=1e-3, weight_decay=1e-4)
    c.schedule.update(kind="piecewise", unit="epoch", every=6, factor=0.3)
    c.train.update(batch_size=128, epochs=20, eval_every_steps=200, select_best=True)
    return c
