"""MD-tanh-S (Ajanthan et al., AISTATS'21), binary LeNet-5 on Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist).

The paper protocol at CPU size: every tensor binary (first/last layer, biases), BN
non-affine, xavier-uniform init, Adam 1e-3, lr x0.3 every 6 epochs of 20 (the
paper's 30k of 100k), rounded net evaluated on a 5k validation split every 200 steps,
best reported on test (no BN re-estimation: the paper does none).

Annealing beta_t = 1.2^ceil(t / 43), capped at 1e35: the paper's schedule for its
ResNet-18 CIFAR-100 and TinyImageNet cells (1.2 every 500 of 100k iterations) scaled
to this run's 8,580 steps, so beta makes the paper's 200 increases and ends where the
paper's does (1.2^200 ~ 7e15). Keeping the paper's bti instead (the former 1.1 every
100 steps: beta_end ~ 3.6e3) leaves the soft net tanh(beta y) far from binary at the
end -- 16.6% of latents have |y| < 1e-2 -- and the rounded net at 79.02% while the soft
one trains to ~95%; the CIFAR-10 ResNet-18 cell scaled the same way (1.02 every 17
steps, beta_end ~ 2.2e4) reaches 82.21%, this schedule 88.64% (seed 0, test at best
val.; BinaryConnect on the same model, protocol and budget: 87.92%). Over seeds 0-2:
88.35 +- 0.56% vs BinaryConnect 88.00 +- 0.07% (a tie within the seed spread). Commands:
bench/results/claims/fashion_md_tanh_s_vs_bc.md, README "Claims".
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5", affine_bn=False, init="xavier_uniform")
    c.method = dict(name="md_tanh_s", levels=2, bts=1.2, bti=43, beta_max=1e35)
    c.quant.update(include=(".*",))
    c.optimizer.update(name="adam", lr=1e-3)
    c.schedule.update(kind="piecewise", unit="epoch", every=6, factor=0.3)
    c.train.update(batch_size=128, epochs=20, eval_every_steps=200, select_best=True)
    return c
