"""MetaQuant (Chen et al., NeurIPS'19) Table 1: every (net, forward, optimizer, meta net) cell.

`--config configs/metaquant_cifar.py:<net>,<forward>,<optimizer>,<meta_net>`, e.g.
`:resnet20,dorefa,sgd,multifc` (the default). net: resnet20 | resnet32 | resnet44
(CIFAR-10) or resnet56 | resnet110 (CIFAR-100); forward: dorefa | bwn; optimizer:
sgd | adam; meta_net: multifc | fcgrad | lstmfc. The per-cell files
`metaquant_cifar10_resnet20_<forward>_<optimizer>_<meta_net>.py` call this function.

Recipe (METHODS.md §3 and the released meta-quantize.py): 1-bit weights in every conv
and the fc (first and last included), base lr 1e-3 (SGD, or Adam with coupled L2 5e-4
as the released code's refinement), meta net hidden 100 with Adam 1e-3, 100 epochs,
x0.1 every 30, batch 128, warm start from the full-precision run of the same net
(runs/fp_<dataset>_<net>: `configs/fp_cifar10_resnet20.py` with
`--config.model.name=<net>` [`--config.dataset.name=cifar100`]).

Step rule: variant='released', the rule of the released meta-quantize.py that produced
Table 1 (forward at W_t - lr pi_{t-1}, commit W_t - lr pi_t), not the library default
'paper' (eq. 6 / Alg. 1: forward and commit at W_t - lr pi_t);
`--config.method.variant=paper` runs the paper's rule. The STE cells of the table are
`dorefa_cifar10_resnet20.py` / `bwn_cifar10_resnet20.py` (launch/metaquant.sh).
Differences from the released code that remain: docs/fidelity.md, MetaQuant.
"""
from jaxquant.config import base_config

NETS = {"resnet20": "cifar10", "resnet32": "cifar10", "resnet44": "cifar10",
        "resnet56": "cifar100", "resnet110": "cifar100"}


def get_config(cell: str = "resnet20,dorefa,sgd,multifc"):
    net, forward, optimizer, meta_net = (cell or "resnet20,dorefa,sgd,multifc").split(",")
    if net not in NETS or optimizer not in ("sgd", "adam"):
        raise ValueError(f"config argument {cell!r}: want <net>,<forward>,<optimizer>,<meta_net> "
                         f"with net in {', '.join(NETS)} and optimizer sgd | adam.")
    c = base_config()
    c.dataset.update(name=NETS[net])
    c.model.update(name=net, shortcut="B")
    c.method = dict(name="metaquant", forward=forward, bits=1, meta_net=meta_net,
                    meta_lr=1e-3, hidden=100, variant="released")
    c.quant.update(include=[".*kernel"])
    c.optimizer.update(name=optimizer, lr=1e-3, weight_decay=5e-4 if optimizer == "adam" else 0.0)
    c.schedule.update(kind="piecewise", unit="epoch", every=30, factor=0.1)
    c.train.update(batch_size=128, epochs=100, eval_batch_size=1000)
    c.init_checkpoint = f"runs/fp_{NETS[net]}_{net}"
    return c
