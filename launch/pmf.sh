#!/usr/bin/env bash
# Proximal mean-field (Ajanthan et al., ICCV'19): binary networks, 100k Adam iterations
# each (GPU). Paper numbers: the pmf README (METHODS.md §1), verified.
# TinyImageNet: TINY=/path/to/tiny-imagenet-200 (default data/tiny-imagenet-200).
source "$(dirname "$0")/common.sh"
TINY=${TINY:-data/tiny-imagenet-200}

row pmf_cifar10_resnet18       93.24 configs/pmf_cifar10_resnet18.py
row pmf_cifar10_vgg16          91.40 configs/pmf_cifar10_vgg16.py
row pmf_cifar100_resnet18      71.56 configs/pmf_cifar100.py
row pmf_cifar100_vgg16         64.71 configs/pmf_cifar100_vgg16.py
row pmf_tiny_imagenet_resnet18 51.52 configs/pmf_tiny_imagenet_resnet18.py \
    "--config.dataset.name=tiny_imagenet:$TINY"
