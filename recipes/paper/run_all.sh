#!/usr/bin/env bash
# Every CIFAR-10 experiment of the paper at its own settings, on a GPU. Usage:
#   bash recipes/paper/run_all.sh DATA_ROOT OUT_DIR      (DATA_ROOT holds cifar-10-batches-py)
set -euo pipefail
DATA=${1:?cifar-10 data root}; OUT=${2:-runs-paper}; HERE=$(dirname "$0")
T="nrflab train --data-root $DATA --device cuda --quiet"
# Figure 3: standard and adversarial training, with and without BN.
for n in bn none; do
  $T --config "$HERE/cifar10-resnet18-$n.yaml" --out "$OUT/r18-$n" --resume
  $T --config "$HERE/cifar10-resnet18-$n-at.yaml" --out "$OUT/r18-$n-at" --resume
done
nrflab plot "$OUT"/r18-bn "$OUT"/r18-none "$OUT"/r18-bn-at "$OUT"/r18-none-at --out "$OUT/figure3"
# Feature datasets (Ilyas et al. settings; the robust source is the adversarially trained model).
B="nrflab build-dataset --dataset cifar10 --data-root $DATA --device cuda --resume"
$B d_rand --source "$OUT/r18-bn" --out "$OUT/d_rand" --eps 0.5 --step-size 0.1 --steps 100
$B d_det  --source "$OUT/r18-bn" --out "$OUT/d_det"  --eps 0.5 --step-size 0.1 --steps 100
$B d_r    --source "$OUT/r18-bn-at" --out "$OUT/d_r" --steps 1000 --step-size 0.1 --fake-relu --label-policy prediction
$B conflicting --base "$OUT/d_r" --source "$OUT/r18-bn" --out "$OUT/conflicting" --eps 0.5 --step-size 0.1 --steps 100
# Figures 4 and 6: train both twins on each set (lr 0.01 for D_R and D_rand, 0.1 for D_det and conflicting).
for n in bn none; do
  $T --dataset "$OUT/d_rand" --arch resnet18 --norm $n --init torch --lr 0.01 --out "$OUT/on-d_rand-$n" --resume
  $T --dataset "$OUT/d_r" --arch resnet18 --norm $n --init torch --lr 0.01 --out "$OUT/on-d_r-$n" --resume
  $T --dataset "$OUT/d_det" --arch resnet18 --norm $n --init torch --lr 0.1 --no-augment --out "$OUT/on-d_det-$n" --resume
  $T --dataset "$OUT/conflicting" --arch resnet18 --norm $n --init torch --lr 0.1 --eval-shifted-labels --out "$OUT/on-conflicting-$n" --resume
done
# Transfer between the standard twins, from the final and early-stopped sources.
nrflab transfer --sources "$OUT/r18-bn,$OUT/r18-none" --targets "$OUT/r18-bn,$OUT/r18-none,$OUT/r18-bn-at" \
  --dataset cifar10 --data-root "$DATA" --attack pgd-linf --eps 0.03137 --steps 20 --boost both \
  --out "$OUT/transfer" --device cuda --resume
