#!/usr/bin/env bash
# PD-QAT (Hounie, Elenter & Ribeiro, ICASSP'23) Table 1 on CIFAR-10, ResNet-20q
# (GPU-sized: 100 epochs per row), then the mixed-precision experiment.
# Paper numbers: mean over 6 seeds; each row here is one seed ($SEED, default 0).
#   bash launch/pdqat.sh            # all rows
#   RUNS=runs/pdqat SEED=1 bash launch/pdqat.sh
source "$(dirname "$0")/common.sh"
S=(--config.seed="${SEED:-0}")

row fp_32                 91.50 configs/pdqat_cifar10_fp.py "${S[@]}"
row baseline_b8           91.34 configs/pdqat_cifar10_b8_baseline.py "${S[@]}"
row baseline_b4           91.38 configs/pdqat_cifar10_b4_baseline.py "${S[@]}"
row baseline_b2           89.38 configs/pdqat_cifar10_b2_baseline.py "${S[@]}"
row baseline_b1           84.91 configs/pdqat_cifar10_b1_baseline.py "${S[@]}"
row output_b4             91.20 configs/pdqat_cifar10_b4_output.py "${S[@]}"
row output_b2             89.43 configs/pdqat_cifar10_b2_output.py "${S[@]}"
row output_b1             85.29 configs/pdqat_cifar10_b1_output.py "${S[@]}"
row layerwise_b4          91.48 configs/pdqat_cifar10_b4_layerwise.py "${S[@]}"
row layerwise_b2          89.63 configs/pdqat_cifar10_b2_layerwise.py "${S[@]}"
row layerwise_b1          85.52 configs/pdqat_cifar10_b1_layerwise.py "${S[@]}"

# Mixed precision: rank the layers by the final dual variables of a 1-bit layer-wise
# run with eps_l = 0.0125 (written to $RUNS/rank_b1/method_state.json), then train
# 1-bit DoReFa STE QAT with the k top-ranked layers kept at 32-bit weights.
# The paper plots these (Fig. 1); it prints no table, hence '-'.
row rank_b1               -     configs/pdqat_cifar10_b1_layerwise.py "${S[@]}" \
    --config.method.eps_layer=0.0125
for k in 1 2 4 8; do
  row "mixed_b1_top$k"    -     configs/pdqat_cifar10_b1_baseline.py "${S[@]}" \
      --config.quant.full_precision_layers="top:$k:$RUNS/rank_b1"
done
