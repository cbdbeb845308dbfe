#!/usr/bin/env bash
# MetaQuant (Chen et al., NeurIPS'19) Table 1 on GPU: paper vs measured, one line per cell.
#
#   bash launch/metaquant.sh            # runs land in runs/metaquant/, table in table.tsv
#
# First the full-precision warm starts (one per net), then every 1-bit cell: STE
# (configs/dorefa_cifar10_resnet20.py / bwn_cifar10_resnet20.py with the backward rules
# of MetaQuant's utils/quantize.py) and MetaQuant with each meta net (the released
# meta-quantize.py's step rule, variant='released'), base SGD or Adam at lr 1e-3, 100
# epochs (recipe: configs/metaquant_cifar.py). The paper reports the mean test accuracy
# of the last 10 epochs over 5 runs: each cell prints that statistic for one run
# ("last-10 mean", also in table_last10.tsv) below the final accuracy. The paper's 5
# runs: SEED=k bash launch/metaquant.sh for k = 0..4 (rows of seed k > 0 are labelled
# _seed<k>; the full-precision warm starts are shared). Finished rows are resumed, not
# rerun. docs/fidelity.md (MetaQuant) lists what still differs from the released code.
source "$(dirname "$0")/common.sh"
SEED=${SEED:-0}
TAG=$([ "$SEED" = 0 ] || echo "_seed$SEED")

dataset() { case $1 in resnet56|resnet110) echo cifar100 ;; *) echo cifar10 ;; esac; }
fp() {  # fp <net> <paper>: the full-precision run every cell of that net starts from
  row "fp_$(dataset "$1")_$1" "$2" configs/fp_cifar10_resnet20.py \
    --config.model.name="$1" --config.dataset.name="$(dataset "$1")"
}
last10() {  # last10 <label> <paper>: mean test accuracy of the run's last 10 evaluations
  local metrics="$RUNS/$1/metrics.jsonl" mean
  [ -f "$metrics" ] || return 0
  mean=$("$PYTHON" -c 'import json, sys
acc = {}
for line in open(sys.argv[1]):
    r = json.loads(line) if line.strip() else {}
    if "test_accuracy" in r:
        acc[r["step"]] = r["test_accuracy"]  # a resumed run may log a step twice
last = [acc[s] for s in sorted(acc)][-10:]
print("%.2f" % (100 * sum(last) / len(last)) if last else "-")' "$metrics") || return 0
  printf '%-40s paper %6s   last-10 mean %6s\n' "$1" "$2" "$mean"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$mean" "$RUNS/$1" >>"$RUNS/table_last10.tsv"
}
mq() {  # mq <net> <forward> <optimizer> <meta net> <paper>
  row "$1_$2_$3_$4$TAG" "$5" "configs/metaquant_cifar.py:$1,$2,$3,$4" --config.seed="$SEED" \
    --config.init_checkpoint="$RUNS/fp_$(dataset "$1")_$1"
  last10 "$1_$2_$3_$4$TAG" "$5"
}
ste() {  # ste <net> <forward> <optimizer> <paper>: the same recipe with the STE gradient
  local config=configs/dorefa_cifar10_resnet20.py
  [ "$2" = bwn ] && config=configs/bwn_cifar10_resnet20.py
  row "$1_$2_$3_ste$TAG" "$4" "$config" --config.model.name="$1" --config.dataset.name="$(dataset "$1")" \
    --config.optimizer.name="$3" --config.seed="$SEED" --config.init_checkpoint="$RUNS/fp_$(dataset "$1")_$1"
  last10 "$1_$2_$3_ste$TAG" "$4"
}

fp resnet20 91.5
fp resnet32 92.13
fp resnet44 93.56
fp resnet56 71.22
fp resnet110 -

# CIFAR-10, dorefa, SGD
ste resnet20 dorefa sgd 80.75
mq  resnet20 dorefa sgd multifc 88.94
mq  resnet20 dorefa sgd lstmfc 88.31
mq  resnet20 dorefa sgd fcgrad 88.84
ste resnet32 dorefa sgd 82.91
mq  resnet32 dorefa sgd multifc 89.64
mq  resnet32 dorefa sgd lstmfc 90.40
mq  resnet32 dorefa sgd fcgrad 89.93
ste resnet44 dorefa sgd 86.69
mq  resnet44 dorefa sgd multifc 90.55
mq  resnet44 dorefa sgd lstmfc 91.49
mq  resnet44 dorefa sgd fcgrad 91.54
# CIFAR-10, dorefa, Adam
ste resnet20 dorefa adam 89.78
mq  resnet20 dorefa adam multifc 89.94
mq  resnet20 dorefa adam lstmfc 89.98
mq  resnet20 dorefa adam fcgrad 89.96
ste resnet32 dorefa adam 90.17
mq  resnet32 dorefa adam multifc 90.97
mq  resnet32 dorefa adam lstmfc 90.95
mq  resnet32 dorefa adam fcgrad 90.98
ste resnet44 dorefa adam 91.08
mq  resnet44 dorefa adam multifc 91.77
mq  resnet44 dorefa adam lstmfc 91.87
mq  resnet44 dorefa adam fcgrad 91.99
# CIFAR-10, BWN, SGD (the paper has no MultiFC cell for BWN)
ste resnet20 bwn sgd 75.91
mq  resnet20 bwn sgd lstmfc 89.29
mq  resnet20 bwn sgd fcgrad 88.95
ste resnet32 bwn sgd 79.77
mq  resnet32 bwn sgd lstmfc 90.57
mq  resnet32 bwn sgd fcgrad 90.24
ste resnet44 bwn sgd 82.65
mq  resnet44 bwn sgd lstmfc 91.50
mq  resnet44 bwn sgd fcgrad 91.61
# CIFAR-10, BWN, Adam
ste resnet20 bwn adam 89.90
mq  resnet20 bwn adam lstmfc 90.04
mq  resnet20 bwn adam fcgrad 90.04
ste resnet32 bwn adam 91.02
mq  resnet32 bwn adam lstmfc 91.00
mq  resnet32 bwn adam fcgrad 91.03
ste resnet44 bwn adam 91.12
mq  resnet44 bwn adam lstmfc 91.50
mq  resnet44 bwn adam fcgrad 92.11
# CIFAR-100, dorefa, SGD (ResNet-110: no published number in METHODS.md)
ste resnet56 dorefa sgd 42.27
mq  resnet56 dorefa sgd multifc 65.79
mq  resnet56 dorefa sgd lstmfc 63.65
mq  resnet56 dorefa sgd fcgrad 64.35
ste resnet110 dorefa sgd -
mq  resnet110 dorefa sgd multifc -
mq  resnet110 dorefa sgd lstmfc -
mq  resnet110 dorefa sgd fcgrad -
