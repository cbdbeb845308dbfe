#!/usr/bin/env bash
# ProxQuant (Bai, Wang & Liberty, ICLR'19), CIFAR-10 ResNet-20/32/44/56 (GPU; 300-600 epochs a cell).
#
# Paper column: METHODS.md section 2 gives top-1 *error* % (mean of 4 runs) recalled, not
# read from the paper ([unverified]); printed here as accuracy = 100 - error. The paper's
# ternary numbers are not in METHODS.md ("-"). Each quantized cell warm-starts from the
# full-precision run of the same depth, trained first in this script.
# Every cell runs what the official code ran (configs/proxquant_cifar10.py): Adam rebuilt at
# every epoch (reset_optimizer_every_epoch=True) and CIFAR-10 normalised with ImageNet's
# mean/std, the full-precision warm starts included (docs/fidelity.md#proxquant). For the
# paper's plain Adam instead:
#   bash launch/proxquant.sh --config.method.reset_optimizer_every_epoch=False
# (extra arguments go to every quantized row).
#
#   bash launch/proxquant.sh            # RUNS=runs/proxquant by default
source "$(dirname "$0")/common.sh"

#     label               paper  config
row fp_resnet20           91.94  configs/fp_cifar10_resnet20.py --config.dataset.normalization=imagenet
row fp_resnet32           92.75  configs/fp_cifar10_resnet32.py --config.dataset.normalization=imagenet
row fp_resnet44           93.04  configs/fp_cifar10_resnet44.py --config.dataset.normalization=imagenet
row fp_resnet56           93.46  configs/fp_cifar10_resnet56.py --config.dataset.normalization=imagenet

warm() { echo "--config.init_checkpoint=$RUNS/fp_resnet$1"; }
row bc_resnet20           90.46  configs/proxquant_bc_cifar10_resnet20.py      "$(warm 20)" "$@"
row bc_resnet32           91.39  configs/proxquant_bc_cifar10_resnet32.py      "$(warm 32)" "$@"
row bc_resnet44           91.77  configs/proxquant_bc_cifar10_resnet44.py      "$(warm 44)" "$@"
row bc_resnet56           92.03  configs/proxquant_bc_cifar10_resnet56.py      "$(warm 56)" "$@"
row pq_binary_resnet20    90.65  configs/proxquant_binary_cifar10_resnet20.py  "$(warm 20)" "$@"
row pq_binary_resnet32    91.47  configs/proxquant_binary_cifar10_resnet32.py  "$(warm 32)" "$@"
row pq_binary_resnet44    92.05  configs/proxquant_binary_cifar10_resnet44.py  "$(warm 44)" "$@"
row pq_binary_resnet56    92.30  configs/proxquant_binary_cifar10_resnet56.py  "$(warm 56)" "$@"
row pq_ternary_resnet20   -      configs/proxquant_ternary_cifar10_resnet20.py "$(warm 20)" "$@"
row pq_ternary_resnet32   -      configs/proxquant_ternary_cifar10_resnet32.py "$(warm 32)" "$@"
row pq_ternary_resnet44   -      configs/proxquant_ternary_cifar10_resnet44.py "$(warm 44)" "$@"
row pq_ternary_resnet56   -      configs/proxquant_ternary_cifar10_resnet56.py "$(warm 56)" "$@"
