"""Plain PyTorch CIFAR ResNet-20 / ResNet-18 training steps: the references the JAX step is timed against.

The same networks as `jaxquant.models` resnet20 (He et al. 2016, 6n+2 with n = 3,
widths 16/32/64, option-A shortcuts: subsample + zero channel padding split evenly)
and resnet18 with the CIFAR stem (3x3 stem conv, no max-pool, stages of 2 blocks at
widths 64/128/256/512, option-B shortcuts: 1x1 strided conv + BN where the shape
changes); conv layers without bias, affine BatchNorm momentum 0.1 / eps 1e-5, global
average pool, linear head with bias. The same step: uint8 NHWC batch -> pad-4 random
crop + horizontal flip per image -> normalise -> forward -> cross-entropy ->
backward -> Adam. Not part of the package; bench/step_time.py imports it.

    python bench/torch_resnet.py --model resnet18 --batch 32 --steps 10
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Block(nn.Module):
    """Basic block; shortcut 'A' (subsample + zero-pad channels) or 'B' (1x1 conv + BN)."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra, self.shortcut = stride, cout - cin, shortcut
        self.reshape = stride != 1 or cin != cout
        if self.reshape and shortcut == "B":
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x
        if self.reshape and self.shortcut == "B":
            s = self.proj(x)
        elif self.reshape:
            s = x[:, :, ::self.stride, ::self.stride]
            s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + s)


class CifarResNet(nn.Module):
    """3x3 stem, basic-block stages (the first block of each later stage strides 2), GAP, head."""

    def __init__(self, widths, blocks_per_stage: int, shortcut: str, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn_stem = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for s, width in enumerate(widths):
            for b in range(blocks_per_stage):
                blocks.append(_Block(cin, width, 2 if s > 0 and b == 0 else 1, shortcut))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = F.relu(self.bn_stem(self.stem(x)))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)))


def crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-image pad-4 random crop and horizontal flip of uint8 NHWC images -> NHWC."""
    n, h, w, _ = images.shape
    dev = images.device
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]
    out = padded[torch.arange(n, device=dev)[:, None, None], rows, cols]
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(2), out)


MODELS = {  # name -> constructor; the names of bench/common.py MODELS
    "resnet20": lambda: CifarResNet((16, 32, 64), 3, "A"),  # 269,722 params
    "resnet18": lambda: CifarResNet((64, 128, 256, 512), 2, "B"),  # 11,173,962 params
}


class TorchStep:
    """One training step of `model` with Adam on a fixed uint8 batch; `run(k)` -> s/step."""

    def __init__(self, batch: int, model: str = "resnet20", lr: float = 1e-3, seed: int = 0,
                 device: str = "cpu"):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = MODELS[model]().to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.images = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=self.gen,
                                    device=self.device)
        self.labels = torch.randint(0, 10, (batch,), generator=self.gen, device=self.device)
        self.mean = torch.tensor([0.4914, 0.4822, 0.4465], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor([0.2023, 0.1994, 0.2010], device=self.device).view(1, 3, 1, 1)
        self.model.train()
        self.run(3)  # warm-up (allocator, thread pool, cudnn autotuning)

    def step(self):
        x = crop_flip(self.images, self.gen).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        loss = F.cross_entropy(self.model(x), self.labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, steps: int) -> float:
        self._sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        self._sync()
        return (time.perf_counter() - t0) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20", choices=sorted(MODELS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    step = TorchStep(args.batch, args.model)
    seconds = step.run(args.steps)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads): {args.model} batch "
          f"{args.batch}: {1e3 * seconds:.1f} ms/step, {args.batch / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
