"""PMF (Ajanthan et al., ICCV'19), binary LeNet-5 on Fashion-MNIST (IDX files; Debian package dataset-fashion-mnist).

The paper protocol at CPU size: every tensor binary (first/last layer, biases), BN
non-affine, xavier-uniform init, Adam 1e-3, weight decay 1e-4, lr x0.3 every 6 epochs of 20 (the
paper's 30k of 100k), rounded net evaluated on a 5k validation split every 200 steps, best
reported on test; the pmf repo's rules (`jacobian='pmf_code'`, `logit_init='xavier_wide'`,
as the PMF table configs).

Annealing beta_t = 1.1^ceil(t / 86), capped at 1e4: the paper's CIFAR-10 ResNet-18 schedule
(1.1 every 1,000 of 100k iterations, 100 increases, at the 1e4 cap from iteration 97k)
scaled to this run's 8,580 steps, so beta makes the same 100 increases and reaches the
cap at step ~8.3k, as the paper's does at 97% of its run (every PMF table cell ends at the
cap). Keeping the paper's bti in steps (the former 1.1 every 100) made 86 increases and
ended at beta ~ 3.6e3, the unscaled-schedule problem of the MD-tanh-S config
(`md_tanh_s_fashion_mnist.py`). The same scaling is what `jaxquant.compare`'s `pmf` preset
does on any budget; measured with it: README "Claims" (Fashion-MNIST MLP, 3 seeds).

Measured (this config, seeds 0-2, test at best val.): 83.25, 83.12, 81.98 = 82.78 +- 0.70%,
below BinaryConnect on the same model and protocol (88.00 +- 0.07%):
`python -m jaxquant.compare --config configs/pmf_fashion_mnist.py --workdir /work/runs/pmf_lenet
--methods 'pmf:bts=1.1:bti=86' --seeds 3` (bench/results/claims/fashion_lenet_pmf.md). The
rounded net lags the soft one to the end (train 94%, validation 76% at step 8,000); with the
pmf code's cap of 1e4 this is where PMF ends at this budget (README "Claims").
"""
from jaxquant.config import base_config


def get_config():
    c = base_config()
    c.dataset.update(name="fashion_mnist", validation=5_000)
    c.model.update(name="lenet5", affine_bn=False, init="xavier_uniform")
    c.method = dict(name="pmf", levels=2, bts=1.1, bti=86, beta_max=1e4, jacobian="pmf_code",
                    logit_init="xavier_wide")
    c.quant.update(include=(".*",))
    c.optimizer.update(name="adam", lr=1e-3, weight_decay=1e-4)
    c.schedule.update(kind="piecewise", unit="epoch", every=6, factor=0.3)
    c.train.update(batch_size=128, epochs=20, eval_every_steps=200, select_best=True)
    return c
