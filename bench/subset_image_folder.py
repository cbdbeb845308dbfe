"""A class-balanced subset of an image folder, as symlinks: for small-budget runs on CPU.

    python bench/subset_image_folder.py runs/data/cifar10-jpeg runs/data/cifar10-10k \
        --train 1000 --test 200

takes the first `--train` / `--test` files (sorted by name) of every class of
`<src>/{train,test}/<class>/` and links them into `<dst>` with the same layout,
usable as `--config.dataset.name=image_folder:<dst>`.
"""
from __future__ import annotations

import argparse
import os


def subset(src: str, dst: str, per_class: dict) -> int:
    """Link the first per_class[split] files of each class; returns the number of links."""
    src, dst, count = os.path.abspath(src), os.path.abspath(dst), 0
    for split, n in per_class.items():
        for cls in sorted(os.listdir(os.path.join(src, split))):
            os.makedirs(os.path.join(dst, split, cls), exist_ok=True)
            for name in sorted(os.listdir(os.path.join(src, split, cls)))[:n]:
                link = os.path.join(dst, split, cls, name)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(src, split, cls, name), link)
                count += 1
    return count


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--train", type=int, default=1000, help="images per class in train")
    p.add_argument("--test", type=int, default=200, help="images per class in test")
    args = p.parse_args()
    n = subset(args.src, args.dst, dict(train=args.train, test=args.test))
    print(f"{args.dst}: {n} images (linked)")


if __name__ == "__main__":
    main()
