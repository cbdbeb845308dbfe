#!/usr/bin/env bash
# Mirror descent (Ajanthan et al., AISTATS'21): binary ResNet-18 / VGG-16 on CIFAR-10/100
# and ResNet-18 on TinyImageNet, 100k Adam iterations each (GPU), one row per table cell.
# Paper numbers from METHODS.md §1: the three MD cells known there are [unverified]
# (recalled, approximate); the other cells print n/a.
# TinyImageNet: TINY=/path/to/tiny-imagenet-200 (default data/tiny-imagenet-200).
source "$(dirname "$0")/common.sh"
TINY=${TINY:-data/tiny-imagenet-200}

row md_tanh_s_cifar10_resnet18     93.3  configs/md_tanh_s_cifar10_resnet18.py  # [unverified]
row md_tanh_s_cifar10_vgg16        n/a   configs/md_tanh_s_cifar10_vgg16.py
row md_tanh_s_cifar100_resnet18    n/a   configs/md_tanh_s_cifar100_resnet18.py
row md_tanh_s_cifar100_vgg16       n/a   configs/md_tanh_s_cifar100_vgg16.py
row md_tanh_s_tiny_imagenet_resnet18 n/a   configs/md_tanh_s_tiny_imagenet_resnet18.py "--config.dataset.name=tiny_imagenet:$TINY"

row md_softmax_s_cifar10_resnet18  n/a   configs/md_softmax_s_cifar10_resnet18.py
row md_softmax_s_cifar10_vgg16     n/a   configs/md_softmax_s_cifar10_vgg16.py
row md_softmax_s_cifar100_resnet18 72.2  configs/md_softmax_s_cifar100_resnet18.py  # [unverified]
row md_softmax_s_cifar100_vgg16    n/a   configs/md_softmax_s_cifar100_vgg16.py
row md_softmax_s_tiny_imagenet_resnet18 n/a   configs/md_softmax_s_tiny_imagenet_resnet18.py "--config.dataset.name=tiny_imagenet:$TINY"

row md_tanh_cifar10_resnet18       n/a   configs/md_tanh_cifar10_resnet18.py
row md_tanh_cifar10_vgg16          n/a   configs/md_tanh_cifar10_vgg16.py
row md_tanh_cifar100_resnet18      n/a   configs/md_tanh_cifar100_resnet18.py
row md_tanh_cifar100_vgg16         n/a   configs/md_tanh_cifar100_vgg16.py
row md_tanh_tiny_imagenet_resnet18 n/a   configs/md_tanh_tiny_imagenet_resnet18.py "--config.dataset.name=tiny_imagenet:$TINY"

row md_softmax_cifar10_resnet18    n/a   configs/md_softmax_cifar10_resnet18.py
row md_softmax_cifar10_vgg16       n/a   configs/md_softmax_cifar10_vgg16.py
row md_softmax_cifar100_resnet18   n/a   configs/md_softmax_cifar100_resnet18.py
row md_softmax_cifar100_vgg16      n/a   configs/md_softmax_cifar100_vgg16.py
row md_softmax_tiny_imagenet_resnet18 54.6  configs/md_softmax_tiny_imagenet_resnet18.py "--config.dataset.name=tiny_imagenet:$TINY"  # [unverified]
