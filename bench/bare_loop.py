"""Reference training loops for bench/trainer_overhead.py: a bare jitted JAX/Flax loop and a
plain PyTorch loop, each doing the trainer's job with nothing of jaxquant in it.

The job: a binary-weight network (BinaryConnect: forward at sign(w) on every conv/dense
kernel, hard-tanh-gated straight-through gradient 1_{|w| <= 1}, biases and BN in full
precision), cross-entropy, Adam with a cosine-decayed learning rate, a fresh shuffle per
epoch, the last partial batch dropped, pad-4 crop + flip for 32x32x3 images; test
accuracy of the sign(w) network at the end. Models: the MLP 784-256-256-10 with BN
after each hidden dense layer, and the CIFAR ResNet-20 (option-A shortcuts), with
Flax's default initialisers (lecun-normal kernels, zero biases) as jaxquant's models.

Data come from `.npy` files (train_x uint8 NHWC, train_y int32, test_x, test_y, mean,
std) that bench/trainer_overhead.py writes once from `jaxquant.data.load`. The JSON
written by `--json` holds the test accuracy and seconds for imports, compile (JAX),
training and evaluation.

    python bench/bare_loop.py --loop jax --model mlp --data DIR --epochs 15 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, NamedTuple

import numpy as np

STARTED = time.perf_counter()


def load_arrays(directory: str) -> dict:
    return {k: np.load(os.path.join(directory, f"{k}.npy"))
            for k in ("train_x", "train_y", "test_x", "test_y", "mean", "std")}


# ------------------------------------------------------------------ JAX / Flax

def flax_model(name: str, num_classes: int = 10):
    import flax.linen as nn
    import jax.numpy as jnp

    def bn(train, name):
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            x = x.reshape((x.shape[0], -1))
            for i, width in enumerate((256, 256)):
                x = nn.relu(bn(train, f"bn{i}")(nn.Dense(width, name=f"dense{i}")(x)))
            return nn.Dense(num_classes, name="head")(x)

    class Block(nn.Module):
        width: int
        stride: int

        @nn.compact
        def __call__(self, x, train):
            conv = lambda w, s, name: nn.Conv(w, (3, 3), (s, s), padding=((1, 1), (1, 1)),  # noqa: E731
                                              use_bias=False, name=name)
            y = nn.relu(bn(train, "bn1")(conv(self.width, self.stride, "conv1")(x)))
            y = bn(train, "bn2")(conv(self.width, 1, "conv2")(y))
            if self.stride != 1 or x.shape[-1] != self.width:  # option A: subsample + zero channels
                x = x[:, ::self.stride, ::self.stride]
                extra = self.width - x.shape[-1]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
            return nn.relu(x + y)

    class ResNet20(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            x = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
            x = nn.relu(bn(train, "bn_stem")(x))
            for s, width in enumerate((16, 32, 64)):
                for b in range(3):
                    x = Block(width, 2 if s > 0 and b == 0 else 1, name=f"s{s}b{b}")(x, train)
            return nn.Dense(num_classes, name="head")(jnp.mean(x, axis=(1, 2)))

    return {"mlp": MLP, "resnet20": ResNet20}[name]()


class JaxJob(NamedTuple):
    """The bare loop's pieces: the jitted step, its initial arguments, the evaluation."""
    step: Any          # (params, stats, opt_state, perm, i, t) -> params, stats, opt_state, loss
    params: Any
    stats: Any
    opt_state: Any
    correct: Any       # (params, stats, images, labels) -> #correct
    permute: Any       # key -> permutation of the training set
    key: Any
    data: tuple        # train images, train labels, test images, test labels (device)
    per_epoch: int
    total: int


def jax_job(arrays, model_name, epochs, steps, batch, lr, seed=0) -> JaxJob:
    import jax
    import jax.numpy as jnp
    import optax
    model = flax_model(model_name)
    tx_, ty, test_x, test_y = (jnp.asarray(arrays[k]) for k in ("train_x", "train_y", "test_x", "test_y"))
    mean, std = jnp.asarray(arrays["mean"], jnp.float32), jnp.asarray(arrays["std"], jnp.float32)
    n = tx_.shape[0]
    per_epoch = n // batch
    total = steps or epochs * per_epoch
    augment = tx_.shape[1:] == (32, 32, 3)
    variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *tx_.shape[1:])), train=False)
    params, stats = variables["params"], variables["batch_stats"]
    opt = optax.adam(optax.cosine_decay_schedule(lr, total))
    is_kernel = jax.tree_util.tree_map_with_path(lambda p, _: p[-1].key == "kernel", params)

    def binary(p, gated):  # sign(w) forward; gradient 1_{|w| <= 1} when gated
        def q(w, k):
            if not k:
                return w
            s = jnp.where(w >= 0, 1.0, -1.0)
            if not gated:
                return s
            c = jnp.clip(w, -1.0, 1.0)
            return c + jax.lax.stop_gradient(s - c)
        return jax.tree.map(q, p, is_kernel)

    def norm(x):
        return (x.astype(jnp.float32) / 255.0 - mean) / std

    def prep(x, key):
        if augment:  # pad-4 random crop + horizontal flip per image
            u = jax.random.uniform(key, (x.shape[0], 3))
            off = jnp.minimum(jnp.floor(u[:, :2] * 9), 8).astype(jnp.int32)
            padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
            x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (32, 32, 3)))(padded, off)
            x = jnp.where((u[:, 2] < 0.5)[:, None, None, None], x[:, :, ::-1], x)
        return norm(x)

    key = jax.random.PRNGKey(seed + 1)

    @jax.jit
    def step(params, stats, opt_state, perm, i, t):
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
        x, y = prep(tx_[idx], jax.random.fold_in(key, t)), ty[idx]

        def loss_fn(p):
            logits, new = model.apply({"params": binary(p, True), "batch_stats": stats}, x,
                                      train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    @jax.jit
    def correct(params, stats, x, y):
        logits = model.apply({"params": binary(params, False), "batch_stats": stats}, norm(x),
                             train=False)
        return jnp.sum(jnp.argmax(logits, -1) == y)

    permute = jax.jit(lambda k: jax.random.permutation(k, n))
    return JaxJob(step, params, stats, opt.init(params), correct, permute, key,
                  (tx_, ty, test_x, test_y), per_epoch, total)


def compile_step(job: JaxJob):
    """The bare step, compiled ahead of time for the job's argument shapes."""
    import jax.numpy as jnp
    n = job.data[0].shape[0]
    return job.step.lower(job.params, job.stats, job.opt_state, jnp.arange(n), np.int32(0),
                          np.int32(0)).compile()


def jax_loop(arrays, model_name, epochs, steps, batch, lr, seed=0) -> dict:
    import jax
    imported = time.perf_counter()
    job = jax_job(arrays, model_name, epochs, steps, batch, lr, seed)
    params, stats, opt_state, (_, _, test_x, test_y) = job.params, job.stats, job.opt_state, job.data
    t = time.perf_counter()
    step = compile_step(job)
    compiled = time.perf_counter()
    done = 0
    for epoch in range(-(-job.total // job.per_epoch)):
        perm = job.permute(jax.random.fold_in(job.key, 10**6 + epoch))
        for i in range(min(job.per_epoch, job.total - done)):
            params, stats, opt_state, loss = step(params, stats, opt_state, perm,
                                                  np.int32(i), np.int32(done))
            done += 1
    jax.block_until_ready(params)
    trained = time.perf_counter()
    right = sum(int(job.correct(params, stats, test_x[i:i + 1000], test_y[i:i + 1000]))
                for i in range(0, test_x.shape[0], 1000))
    end = time.perf_counter()
    return dict(test_accuracy=right / test_x.shape[0], steps=done, import_s=imported - STARTED,
                compile_s=compiled - t, train_s=trained - compiled, eval_s=end - trained,
                final_loss=float(loss))


# ------------------------------------------------------------------ PyTorch

def torch_loop(arrays, model_name, epochs, steps, batch, lr, seed=0, threads=0) -> dict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    imported = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if model_name == "mlp":
        d = int(np.prod(arrays["train_x"].shape[1:]))
        model = nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.BatchNorm1d(256), nn.ReLU(),
                              nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    else:
        import torch_resnet
        model = torch_resnet.MODELS[model_name]()
    kernels = [p for name, p in model.named_parameters() if p.dim() > 1]
    latent = [p.detach().clone() for p in kernels]
    x_all = torch.from_numpy(arrays["train_x"])
    y_all = torch.from_numpy(arrays["train_y"].astype(np.int64))
    mean = torch.tensor(arrays["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(arrays["std"], dtype=torch.float32).view(1, -1, 1, 1)
    n = len(y_all)
    per_epoch = n // batch
    total = steps or epochs * per_epoch
    augment = tuple(x_all.shape[1:]) == (32, 32, 3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + np.cos(np.pi * min(t, total) / total)))
    gen = torch.Generator().manual_seed(seed)

    def prep(x, train):
        if augment and train:
            import torch_resnet
            x = torch_resnet.crop_flip(x, gen)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - mean) / std

    def binarize():  # forward weights = sign(latent) on the kernels
        with torch.no_grad():
            for p, w in zip(kernels, latent):
                p.copy_(torch.where(w >= 0, 1.0, -1.0))

    model.train()
    t = time.perf_counter()
    done = 0
    for epoch in range(-(-total // per_epoch)):
        perm = torch.randperm(n, generator=gen)
        for i in range(min(per_epoch, total - done)):
            idx = perm[i * batch:(i + 1) * batch]
            binarize()
            loss = F.cross_entropy(model(prep(x_all[idx], True)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # gated STE: the gradient at sign(w) moves the latent w
                for p, w in zip(kernels, latent):
                    p.grad.mul_((w.abs() <= 1).to(p.grad.dtype))
                    p.copy_(w)
            opt.step()
            sched.step()
            with torch.no_grad():
                for p, w in zip(kernels, latent):
                    w.copy_(p)
            done += 1
    trained = time.perf_counter()
    binarize()
    model.eval()
    right = 0
    with torch.no_grad():
        tx, ty = torch.from_numpy(arrays["test_x"]), torch.from_numpy(arrays["test_y"].astype(np.int64))
        for i in range(0, len(ty), 1000):
            right += int((model(prep(tx[i:i + 1000], False)).argmax(-1) == ty[i:i + 1000]).sum())
    end = time.perf_counter()
    return dict(test_accuracy=right / len(ty), steps=done, import_s=imported - STARTED,
                compile_s=0.0, train_s=trained - t, eval_s=end - trained, final_loss=float(loss),
                torch=torch.__version__, threads=torch.get_num_threads())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=("jax", "torch"), required=True)
    p.add_argument("--model", choices=("mlp", "resnet20"), required=True)
    p.add_argument("--data", required=True, help="directory of the .npy arrays")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--steps", type=int, default=0, help="> 0: this many steps instead of epochs")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: its default)")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    arrays = load_arrays(args.data)
    if args.loop == "jax":
        out = jax_loop(arrays, args.model, args.epochs, args.steps, args.batch, args.lr)
    else:
        out = torch_loop(arrays, args.model, args.epochs, args.steps, args.batch, args.lr,
                         threads=args.threads)
    out["total_s"] = time.perf_counter() - STARTED
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
