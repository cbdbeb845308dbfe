#!/usr/bin/env bash
# L-DNQ (Chen et al., AAAI'19): 3-level post-training quantization of CIFAR-10
# ResNets from 1% of the train set (500 images), paper vs measured (GPU).
#
#   bash launch/ldnq.sh            # runs land in runs/ldnq/, the table in runs/ldnq/table.tsv
#
# L-DNQ starts from a trained full-precision network, so each depth's FP model is
# trained first (200 epochs, configs/fp_cifar10_resnet20.py with the model swapped and the
# weight decay of the code's train_base_model.py, 5e-4; the paper's FP numbers are
# 91.50 / 92.13 / 92.66); finished runs are reused. The L-DNQ rows run what the official
# code ran (its permuted H, the fc bias retrained last: docs/fidelity.md#l-dnq); for the
# consistent H pass --config.ldnq.hessian_order=consistent to this script
# (extra arguments go to every L-DNQ row).
source "$(dirname "$0")/common.sh"

for depth in 20 32 56; do
  case $depth in 20) fp=91.50; q=85.95;; 32) fp=92.13; q=88.47;; 56) fp=92.66; q=89.17;; esac
  row "fp_cifar10_resnet$depth" "$fp" configs/fp_cifar10_resnet20.py --config.model.name=resnet$depth \
      --config.optimizer.weight_decay=5e-4
  row "ldnq3_cifar10_resnet$depth" "$q" configs/ldnq_cifar10_resnet$depth.py \
      --config.init_checkpoint="$RUNS/fp_cifar10_resnet$depth" "$@"
done

# ImageNet (top-1, 3 levels: R18 45.98, R34 43.99, R50 56.49; 9 levels lose 2.73 of R18's
# 69.76) needs the prepared imagenet2012 tfds data and torchvision's weights converted
# into runs/torchvision_resnet{18,34,50} (python -m jaxquant.convert, see the configs):
#   row ldnq3_imagenet_resnet18 45.98 configs/ldnq_imagenet_resnet18.py
#   row ldnq9_imagenet_resnet18 67.03 configs/ldnq_imagenet_resnet18.py --config.ldnq.levels=9
#   row ldnq3_imagenet_resnet34 43.99 configs/ldnq_imagenet_resnet34.py
#   row ldnq3_imagenet_resnet50 56.49 configs/ldnq_imagenet_resnet50.py
