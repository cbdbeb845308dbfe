#!/usr/bin/env bash
# PD-QAT (Hounie, Elenter & Ribeiro, ICASSP'23) Table 1 on CIFAR-10, ResNet-20q
# (GPU-sized: 100 epochs per row), then the mixed-precision experiment (Fig. 1).
# Paper numbers: mean over 6 seeds (0-5); each row here is one seed ($SEED, default 0).
# The baseline column is PD-QAT's own baselines, not plain DoReFa: con-qat ran
# train_anyprec.py for seeds 0-2 and train_vanilla.py --vanilla for seeds 3-5
# (config.method.baseline='anyprec' / 'vanilla'); BASELINE=anyprec|vanilla overrides
# the choice by seed. Every config runs con-qat's behaviour (docs/fidelity.md, PD-QAT).
#   bash launch/pdqat.sh                    # all rows, seed 0 (anyprec baselines)
#   RUNS=runs/pdqat SEED=3 bash launch/pdqat.sh   # seed 3 (vanilla baselines)
source "$(dirname "$0")/common.sh"
SEED=${SEED:-0}
S=(--config.seed="$SEED")
if [ -n "${BASELINE:-}" ]; then B=$BASELINE; elif [ "$SEED" -le 2 ]; then B=anyprec; else B=vanilla; fi
BL=("${S[@]}" --config.method.baseline="$B")

row fp_32                 91.50 configs/pdqat_cifar10_fp.py "${S[@]}"
row "baseline_${B}_b8"    91.34 configs/pdqat_cifar10_b8_baseline.py "${BL[@]}"
row "baseline_${B}_b4"    91.38 configs/pdqat_cifar10_b4_baseline.py "${BL[@]}"
row "baseline_${B}_b2"    89.38 configs/pdqat_cifar10_b2_baseline.py "${BL[@]}"
row "baseline_${B}_b1"    84.91 configs/pdqat_cifar10_b1_baseline.py "${BL[@]}"
row output_b4             91.20 configs/pdqat_cifar10_b4_output.py "${S[@]}"
row output_b2             89.43 configs/pdqat_cifar10_b2_output.py "${S[@]}"
row output_b1             85.29 configs/pdqat_cifar10_b1_output.py "${S[@]}"
row layerwise_b4          91.48 configs/pdqat_cifar10_b4_layerwise.py "${S[@]}"
row layerwise_b2          89.63 configs/pdqat_cifar10_b2_layerwise.py "${S[@]}"
row layerwise_b1          85.52 configs/pdqat_cifar10_b1_layerwise.py "${S[@]}"

# Mixed precision (Fig. 1; con-qat's retrain branch, scripts/layer_selection/
# {best,worst}_<k>_bw_1.sh): rank the layers by the final dual variables of a 1-bit
# layer-wise run with eps_l = 0.0125 (written to $RUNS/rank_b1/method_state.json), then
# train 1-bit PD-QAT with the output constraint (eps_out 0.1, the script's default) with
# the k largest-lambda ("top") or smallest-lambda ("bottom") layers at 32 bits. The
# scripts ran k = 1, 2, 8, 16; the figure plots 1, 2, 8 (final-epoch accuracy, no table: '-').
row rank_b1               -     configs/pdqat_cifar10_b1_layerwise.py "${S[@]}" \
    --config.method.eps_layer=0.0125
for k in 1 2 8 16; do
  row "mixed_b1_top$k"    -     configs/pdqat_cifar10_b1_mixed.py "${S[@]}" \
      --config.quant.full_precision_layers="top:$k:$RUNS/rank_b1"
  bottom=$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))["ranking"]; print(",".join(r[::-1][:int(sys.argv[2])]))' \
           "$RUNS/rank_b1/method_state.json" "$k") || { echo "mixed_b1_bottom$k: no ranking"; continue; }
  row "mixed_b1_bottom$k" -     configs/pdqat_cifar10_b1_mixed.py "${S[@]}" \
      --config.quant.full_precision_layers="$bottom"
done
