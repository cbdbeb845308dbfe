"""L-DNQ: layer-wise post-training quantization from limited data (Chen et al., AAAI'19).

A trained network is quantized one conv/dense layer at a time, in execution
order. For layer l, with inputs Ŷ taken from the *partly quantized* network
(the layers before l already quantized), the layer-wise second-order loss

    E(Θ̂) = ½ tr((Θ̂ − Θ̄)ᵀ H (Θ̂ − Θ̄)),   H = mean over images and positions of y yᵀ

(y: one input patch, with a 1 appended when the layer's bias is quantized with
it; Θ̄: the layer's weights as a [D(+1), O] matrix) is minimised over Θ̂ = α·Q,
Q with entries in the codebook {0, ±1, ±2, ±4, ...} (`quantizers.pow2_codebook`),
by ADMM (`admm`). After each layer a short "cascade" fine-tune of the BN
parameters and every not-yet-quantized parameter matches the full-precision
network's logits (`cascade_finetune`).

Details read from the official code (csyhhu/L-DNQ) and followed here:
- H in eval mode (BN running statistics), from augmented images of the limited
  set; patches with the layer's own padding and stride.
- ADMM (`utils/quantization.py`): α0 = mean|W0|, G0 = α0·Q(W0; α0), U = 0,
  ρ = H[0, 0]; at most 100 iterations of W = (H + ρI)⁻¹(H W0 + ρ(G − U)),
  G = project(W + U), U ← U + W − G; the best G by tr(δᵀHδ) is kept and the
  loop stops after 3 iterations that do not lower it by more than 1e-3 (that
  tolerance is on the code's unhalved tr(δᵀHδ)). Where H[0, 0] = 0 (a dead
  first input), ρ falls back to mean(diag H) — the code would solve a singular
  system by least squares there.
- Projection: one α per layer, alternately Q = nearest(V/α), α = ⟨V,Q⟩/⟨Q,Q⟩,
  at most 10 times, until |Δα| < 1e-3; it starts from α0 each time and returns
  the iterate with the smallest ‖V − αQ‖² (the code's choice).
- Cascade: both networks in train mode (batch statistics), loss = mean squared
  error between the logits, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, a new
  optimizer per layer; trainable = every parameter not quantized yet (BN of all
  layers, all later layers, and any layer left in full precision). Early stop as
  in `cascade_soft_update`: every 10th batch of an epoch (batch 0 included) the
  running mean of all cascade losses so far is compared with its previous value;
  3 checks in a row that rise or move less than 1e-4 stop it (the first check
  always counts, as the previous value starts at 0). Batches of 128 with
  drop_last. The code has no epoch limit; `cascade_max_epochs` caps it.
- The quantized layer's bias, when in the mask, is quantized jointly with its
  kernel (the code's 'F'/'C' layers).

Two behaviours of the official code are options, off by default (the default is the
algorithm the paper describes; the paper-table configs turn them on, since the code
produced the table — docs/fidelity.md#l-dnq):
- `hessian_order='official'`: the code builds H from TF `extract_image_patches`
  (patch features in (kh, kw, C) order, TF-"SAME" padding) but unfolds the kernel in
  (C, kh, kw) order (`unfold_kernel`), so its ADMM minimises ½ tr(δᵀ H' δ) with
  H' = P H Pᵀ, P the (C, kh, kw) -> (kh, kw, C) permutation, on patches padded "SAME"
  whatever the layer's own padding (for a stride-2 3x3 conv on an even input: 0 rows
  above, 1 below, where the layer pads 1 and 1). Dense layers are unaffected.
  Default 'consistent': patches and kernel rows in the same (C, kh, kw) order and
  padded as the layer pads, so that ½ tr(δᵀHδ) is the change of the layer's output.
- `cascade_own_bias=True`: the code makes trainable every parameter registered after the
  quantized weight (`generate_trainable_parameters`), which includes that layer's own
  bias: the fc bias, quantized with the fc weight, trains again in the last cascade
  step and ends in full precision. Default: a quantized bias stays on the codebook.

Works on any Flax Linen model called as `model.apply(variables, x, train=bool,
mutable=[...])` whose weights live in `nn.Conv` / `nn.Dense` modules; layer
inputs are captured with `nn.intercept_methods`, so models know nothing of it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.scipy.linalg import cho_factor, cho_solve

from jaxquant import quantizers
from jaxquant.errors import UserError
from jaxquant.masks import path_str

Array = jax.Array
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Settings:
    """L-DNQ hyperparameters (`config.ldnq`), the paper's / official code's values by default."""
    levels: int = 3                   # codebook size: 3, 5, 7, 9 or 11
    data_fraction: float = 0.01       # random fraction of the train split used (1%)
    batch_size: int = 128             # cascade batches (and Hessian batches)
    hessian_images: int = 0           # images for H, a fresh random draw per layer; 0 = all
                                      # (the code: 202 = 101 batches of 2)
    admm_iterations: int = 100
    admm_patience: int = 3            # stop after this many iterations without improvement
    admm_tol: float = 1e-3            # improvement of tr(δᵀHδ) that counts
    projection_iterations: int = 10
    projection_tol: float = 1e-3      # |Δα| that ends the alternating projection
    cascade: bool = True              # fine-tune BN + later layers after each layer
    cascade_check_every: int = 10     # early-stop check every this many batches of an epoch
    cascade_patience: int = 3
    cascade_gap: float = 1e-4
    cascade_max_epochs: int = 1000    # the code has no limit
    hessian_order: str = "consistent"  # 'official': the code's permuted H, "SAME"-padded patches
    cascade_own_bias: bool = False    # True: the code's retraining of a layer's quantized bias


HESSIAN_ORDERS = ("consistent", "official")


def default_config() -> ml_collections.ConfigDict:
    """The `config.ldnq` section with every field at its default (`Settings`)."""
    return ml_collections.ConfigDict(dataclasses.asdict(Settings()))


def base_config() -> ml_collections.ConfigDict:
    """`jaxquant.config.base_config()` set up for an L-DNQ run (the `configs/ldnq_*` start).

    method 'ldnq'; every conv/dense kernel and bias quantized, first and last
    layers included, BatchNorm not (`config.quant`; exclude 'stem/.*' / 'head/.*'
    to keep those in full precision); cascade optimizer SGD 1e-3, momentum 0.9,
    weight decay 5e-4 (`config.optimizer`); `config.ldnq` at its defaults. A config
    still sets the dataset, the model and `init_checkpoint` (the FP run).
    """
    from jaxquant.config import base_config as _base

    c = _base()
    c.method = ml_collections.ConfigDict(dict(name="ldnq"))
    c.quant.update(include=(".*kernel", ".*bias"), exclude=("(.*/)?bn[^/]*/.*",))
    c.optimizer.update(name="momentum", lr=1e-3, momentum=0.9, weight_decay=5e-4)
    c.ldnq = default_config()
    return c


def official_code(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`c` set to run what the official L-DNQ code ran (the paper-table configs use it).

    `hessian_order='official'`: the code's H, patch features in (kh, kw, C) order against
    kernel rows in (C, kh, kw) order, patches padded TF-"SAME"; `cascade_own_bias=True`:
    the fc bias trains again in the last cascade step and ends in full precision;
    `hessian_images=202`: H from 101 batches of 2 images drawn afresh for each layer (the
    code's `generate_hessian`, which divides their sum by 100: a factor 1.01 on H that
    ADMM's solution does not depend on, as ρ = H[0, 0] scales with it). The module
    docstring says why these are not the library defaults.
    """
    c.ldnq.update(hessian_order="official", cascade_own_bias=True, hessian_images=202)
    return c


def cifar10_config(model: str) -> ml_collections.ConfigDict:
    """L-DNQ on CIFAR-10 from a full-precision run of `model` (option-B shortcuts, as
    the L-DNQ code's ResNets) in runs/fp_cifar10_<model>, as the official code ran it
    (`official_code`; the `configs/ldnq_cifar10_*` files)."""
    c = official_code(base_config())
    c.dataset.update(name="cifar10")
    c.model.update(name=model, shortcut="B")
    c.init_checkpoint = f"runs/fp_cifar10_{model}"
    return c


def imagenet_config(model: str, **model_fields) -> ml_collections.ConfigDict:
    """L-DNQ on ImageNet from torchvision's `model` weights converted into
    runs/torchvision_<model> (`python -m jaxquant.convert`): 1% of the train split,
    cascade batches of 128, as the official code ran it (`official_code`; the
    `configs/ldnq_imagenet_*` files)."""
    c = official_code(base_config())
    c.dataset.update(name="imagenet2012")
    c.model.update(name=model, **model_fields)
    c.ldnq.update(levels=3, data_fraction=0.01, batch_size=128)
    c.train.update(eval_batch_size=500)
    c.init_checkpoint = f"runs/torchvision_{model}"
    return c


# ---------------------------------------------------------------- layers and patches

class LayerSpec(NamedTuple):
    """A conv/dense layer found in a forward pass: its param path and how it reads its input."""
    path: tuple[str, ...]          # module path, e.g. ('stage1_block0', 'conv1')
    kind: str                      # 'conv' | 'dense'
    kernel_size: tuple[int, ...]   # () for dense
    strides: tuple[int, ...] = ()
    padding: Any = "VALID"
    input_dilation: tuple[int, ...] = ()
    kernel_dilation: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return "/".join(self.path)


def _tuple(value, n: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def _padding(padding, n: int, name: str):
    if isinstance(padding, str):
        if padding.upper() in ("SAME", "VALID"):
            return padding.upper()
    elif isinstance(padding, int):
        return ((padding, padding),) * n
    else:
        pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
        if len(pads) == n and all(len(p) == 2 for p in pads):
            return tuple(pads)
    raise UserError(f"L-DNQ cannot read the padding {padding!r} of layer {name!r}; it supports "
                    f"'SAME', 'VALID', an int or (low, high) pairs.")


def _spec(module) -> LayerSpec:
    path = tuple(module.path)
    if isinstance(module, nn.Dense):
        return LayerSpec(path, "dense", ())
    n = len(module.kernel_size)
    if not 1 <= n <= 3:
        raise UserError(f"L-DNQ supports 1-, 2- and 3-D convolutions (layer {'/'.join(path)!r}).")
    if module.feature_group_count != 1:
        raise UserError(f"L-DNQ does not support grouped convolutions (layer {'/'.join(path)!r}).")
    return LayerSpec(path, "conv", tuple(module.kernel_size), _tuple(module.strides, n),
                     _padding(module.padding, n, "/".join(path)), _tuple(module.input_dilation, n),
                     _tuple(module.kernel_dilation, n))


def find_layers(model: nn.Module, variables, x: Array) -> list[LayerSpec]:
    """The `nn.Conv` / `nn.Dense` layers of `model`, in the order a forward pass calls them.

    x: one example batch [N, ...] (only its shape is used).
    """
    found: dict[tuple, LayerSpec] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
            found.setdefault(tuple(module.path), _spec(module))
        return next_fun(*args, **kwargs)

    def forward(v, x):
        with nn.intercept_methods(interceptor):
            return model.apply(v, x, train=False)

    jax.eval_shape(forward, variables, x)
    return list(found.values())


def capture_input(model: nn.Module, variables, x: Array, path: Sequence[str]) -> Array:
    """The input of the module at `path` when `model` runs on x (eval mode, first call)."""
    path = tuple(path)
    store: list = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and tuple(context.module.path) == path and not store:
            store.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        model.apply(variables, x, train=False)
    if not store:
        raise UserError(f"layer {'/'.join(path)!r} is not called in the model's forward pass.")
    return store[0]


def layer_rows(inputs: Array, layer: LayerSpec, order: str = "consistent") -> Array:
    """The rows y the layer multiplies by its weight matrix: [P, D].

    Dense: the inputs [..., D] flattened over the leading axes. Conv: every input
    patch, from `lax.conv_general_dilated_patches` (features ordered (C, kh, kw)),
    so that conv(x, kernel) = layer_rows(x) @ kernel_matrix(kernel) row by row.
    order='official': the official L-DNQ code's patches instead (TF
    `extract_image_patches`): features ordered (kh, kw, C) and padding "SAME"
    (TF's: the odd pixel of padding goes below / right) whatever the layer's own,
    so row i no longer meets kernel_matrix row i (see the module docstring).
    """
    if layer.kind == "dense":
        return inputs.reshape(-1, inputs.shape[-1])
    if order not in HESSIAN_ORDERS:
        raise UserError(f"unknown Hessian order {order!r} (config.ldnq.hessian_order). "
                        f"Valid: {', '.join(HESSIAN_ORDERS)}.")
    n = len(layer.kernel_size)
    spatial = "HWD"[:n]
    dims = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    padding = "SAME" if order == "official" else layer.padding
    patches = jax.lax.conv_general_dilated_patches(
        inputs, layer.kernel_size, layer.strides, padding, lhs_dilation=layer.input_dilation,
        rhs_dilation=layer.kernel_dilation, dimension_numbers=dims, precision=_HI)
    rows = patches.reshape(-1, patches.shape[-1])
    if order == "official":  # (C, *spatial) -> (*spatial, C)
        c = inputs.shape[-1]
        rows = rows.reshape(-1, c, *layer.kernel_size)
        rows = jnp.moveaxis(rows, 1, -1).reshape(-1, patches.shape[-1])
    return rows


def kernel_matrix(kernel: Array, bias: Array | None = None) -> Array:
    """A Flax kernel (dense [D, O]; conv [*spatial, C, O]) as the weight matrix Θ [D(+1), O].

    Conv rows are ordered (C, *spatial) to match `layer_rows`; the bias, if given,
    is the last row (it multiplies the appended ones column).
    """
    w = kernel if kernel.ndim == 2 else jnp.moveaxis(kernel, -2, 0).reshape(-1, kernel.shape[-1])
    return w if bias is None else jnp.concatenate([w, bias.reshape(1, -1)], axis=0)


def matrix_kernel(theta: Array, kernel_shape: Sequence[int], bias: bool) -> tuple[Array, Array | None]:
    """Inverse of `kernel_matrix`: (kernel of `kernel_shape`, bias or None)."""
    kernel_shape = tuple(kernel_shape)
    w, b = (theta[:-1], theta[-1]) if bias else (theta, None)
    if len(kernel_shape) == 2:
        return w.reshape(kernel_shape), b
    c = kernel_shape[-2]
    k = w.reshape((c, *kernel_shape[:-2], kernel_shape[-1]))
    return jnp.moveaxis(k, 0, -2), b


def hessian(rows: Array, bias: bool = False) -> tuple[Array, Array]:
    """(Σ y yᵀ over the rows, number of rows): accumulate these and divide for H.

    rows: [P, D]; with `bias`, a ones column is appended (y = [row, 1]), giving [D+1, D+1].
    """
    if bias:
        rows = jnp.concatenate([rows, jnp.ones((rows.shape[0], 1), rows.dtype)], axis=1)
    return jnp.matmul(rows.T, rows, precision=_HI), jnp.asarray(rows.shape[0], jnp.float32)


# ---------------------------------------------------------------- projection and ADMM

def objective(theta: Array, h: Array, theta0: Array) -> Array:
    """½ tr((Θ − Θ0)ᵀ H (Θ − Θ0)), the layer-wise second-order loss.

    theta, theta0: [D, O]; h: [D, D].
    """
    d = theta - theta0
    return 0.5 * jnp.sum(d * jnp.matmul(h, d, precision=_HI))


@functools.partial(jax.jit, static_argnames=("levels",))
def project(v: Array, levels: int, alpha0: float | Array, iterations: int = 10,
            tol: float = 1e-3) -> tuple[Array, Array]:
    """Projection onto {α·q : q in the codebook} with one α for the tensor: (G = αQ, α).

    Alternates Q = nearest(V / α) (midpoint thresholds of `pow2_codebook(levels)`)
    and α = ⟨V, Q⟩ / ⟨Q, Q⟩ from α0, at most `iterations` times, until |Δα| < tol;
    returns the iterate (α0's included) with the smallest ‖V − αQ‖².
    """
    book = quantizers.pow2_codebook(levels)
    alpha0 = jnp.asarray(alpha0, v.dtype)

    def fit(alpha):
        return quantizers.nearest(v / alpha, book)

    q0 = fit(alpha0)
    err0 = jnp.sum((v - alpha0 * q0) ** 2)

    def cond(s):
        i, _, _, _, _, done = s
        return (i < iterations) & ~done

    def body(s):
        i, alpha, best_g, best_alpha, best_err, _ = s
        q = fit(alpha)
        qq = jnp.sum(q * q)
        new = jnp.where(qq > 0, jnp.sum(v * q) / jnp.where(qq > 0, qq, 1.0), alpha)
        g = new * q
        err = jnp.sum((v - g) ** 2)
        better = err < best_err
        return (i + 1, new, jnp.where(better, g, best_g), jnp.where(better, new, best_alpha),
                jnp.minimum(err, best_err), jnp.abs(new - alpha) < tol)

    init = (jnp.zeros((), jnp.int32), alpha0, alpha0 * q0, alpha0, err0, jnp.asarray(False))
    _, _, g, alpha, _, _ = jax.lax.while_loop(cond, body, init)
    return g, alpha


class AdmmResult(NamedTuple):
    theta: Array            # best quantized Θ̂ = αQ, [D, O]
    alpha: Array            # its scale
    objective: Array        # ½ tr(δᵀHδ) of theta
    naive_objective: Array  # the same for G0 = α0·nearest(Θ0 / α0), α0 = mean|Θ0|
    iterations: Array       # ADMM iterations run
    best_iteration: Array   # the iteration that found theta (0: G0 itself)


@functools.partial(jax.jit, static_argnames=("levels",))
def admm(h: Array, theta0: Array, levels: int, iterations: int = 100, patience: int = 3,
         tol: float = 1e-3, projection_iterations: int = 10,
         projection_tol: float = 1e-3) -> AdmmResult:
    """ADMM for min ½ tr((Θ̂ − Θ0)ᵀ H (Θ̂ − Θ0)) over Θ̂ = α·Q (L-DNQ, Alg. 1).

    W ← (H + ρI)⁻¹ (H Θ0 + ρ(G − U));  G ← project(W + U);  U ← U + W − G,
    with ρ = H[0, 0], G0 = α0·nearest(Θ0 / α0), α0 = mean|Θ0|. The best G is
    kept; the loop ends after `patience` iterations that lower tr(δᵀHδ) by no
    more than `tol`, or after `iterations`. h [D, D], theta0 [D, O].
    """
    theta0 = jnp.asarray(theta0, jnp.float32)
    h = jnp.asarray(h, jnp.float32)
    alpha0 = jnp.mean(jnp.abs(theta0))
    alpha0 = jnp.where(alpha0 > 0, alpha0, 1.0)
    g0 = alpha0 * quantizers.nearest(theta0 / alpha0, quantizers.pow2_codebook(levels))
    diag = jnp.diag(h)
    rho = jnp.where(h[0, 0] > 0, h[0, 0], jnp.mean(diag))
    rho = jnp.where(rho > 0, rho, 1.0)
    factor = cho_factor(h + rho * jnp.eye(h.shape[0], dtype=h.dtype))
    b1 = jnp.matmul(h, theta0, precision=_HI)
    err0 = 2.0 * objective(g0, h, theta0)

    def cond(s):
        i, fails = s[0], s[1]
        return (i < iterations) & (fails < patience)

    def body(s):
        i, fails, g, u, best = s
        w = cho_solve(factor, b1 + rho * (g - u))
        g, alpha = project(w + u, levels, alpha0, projection_iterations, projection_tol)
        u = u + w - g
        err = 2.0 * objective(g, h, theta0)
        better = (err < best[2]) & (best[2] - err > tol)
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), (g, alpha, err, i + 1), best)
        return i + 1, jnp.where(better, 0, fails + 1), g, u, best

    zero = jnp.zeros((), jnp.int32)
    init = (zero, zero, g0, jnp.zeros_like(theta0), (g0, alpha0, err0, zero))
    i, _, _, _, (g, alpha, err, at) = jax.lax.while_loop(cond, body, init)
    return AdmmResult(g, alpha, 0.5 * err, 0.5 * err0, i, at)


# ---------------------------------------------------------------- the layer loop

class LayerReport(NamedTuple):
    name: str
    shape: tuple
    naive_objective: float
    objective: float
    admm_iterations: int
    alpha: float
    cascade_epochs: int
    cascade_steps: int
    cascade_loss: float

    def line(self) -> str:
        text = (f"{self.name} {self.shape}: objective naive {self.naive_objective:.4g} -> "
                f"ADMM {self.objective:.4g} ({self.admm_iterations} iterations, "
                f"alpha {self.alpha:.4g})")
        if self.cascade_steps:
            text += (f"; cascade {self.cascade_epochs} epochs, {self.cascade_steps} steps, "
                     f"loss {self.cascade_loss:.4g}")
        return text


class LdnqResult(NamedTuple):
    params: Any
    batch_stats: Any
    layers: list          # LayerReport per quantized layer
    steps: int            # cascade optimizer steps in all


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _set(tree, path, value):
    """A copy of nested dict `tree` with `tree[path] = value` (other branches shared)."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _set(tree[path[0]], path[1:], value)
    return out


def quantizable_layers(model, params, batch_stats, x, mask) -> list[tuple[LayerSpec, bool]]:
    """(layer, bias quantized with it) for the layers whose kernel `mask` selects, in call order.

    Raises `UserError` if the mask selects leaves L-DNQ cannot quantize (BN
    parameters, a bias without its kernel, ...).
    """
    specs = find_layers(model, {"params": params, "batch_stats": batch_stats}, x)
    flags = {path_str(p): bool(m) for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
    out, covered = [], set()
    for spec in specs:
        kernel, bias = spec.name + "/kernel", spec.name + "/bias"
        if flags.get(kernel):
            with_bias = flags.get(bias, False)
            out.append((spec, with_bias))
            covered |= {kernel, bias} if with_bias else {kernel}
    stray = sorted(p for p, f in flags.items() if f and p not in covered)
    if stray:
        raise UserError(
            f"L-DNQ quantizes conv/dense kernels (and their biases); config.quant also selects "
            f"{', '.join(stray[:8])}. Exclude those with config.quant.exclude (e.g. "
            f"'(.*/)?bn[^/]*/.*' for BatchNorm).")
    return out


def _trainable(params, frozen: set) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros((), x.dtype) if path_str(p) in frozen else jnp.ones((), x.dtype), params)


def _make_hessian_fn(model, spec: LayerSpec, bias: bool, preprocess, order: str = "consistent"):
    @jax.jit
    def fn(variables, images, key):
        x = preprocess(key, images)
        return hessian(layer_rows(capture_input(model, variables, x, spec.path), spec, order), bias)
    return fn


def _make_cascade_step(model, tx, preprocess):
    @jax.jit
    def step(params, batch_stats, opt_state, fp_variables, trainable, images, key):
        x = preprocess(key, images)
        target, _ = model.apply(fp_variables, x, train=True, mutable=["batch_stats"])
        target = jax.lax.stop_gradient(target)

        def loss_fn(p):
            logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                          mutable=["batch_stats"])
            return jnp.mean((logits - target) ** 2), updates.get("batch_stats", batch_stats)

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grads = jax.tree.map(jnp.multiply, grads, trainable)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(jnp.multiply, updates, trainable)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss
    return step


def cascade_finetune(step, params, batch_stats, fp_variables, trainable, images, tx, key,
                     settings: Settings, on_check: Callable | None = None):
    """Fine-tune the trainable params to match the FP logits, with the code's early stop.

    Returns (params, batch_stats, epochs, steps, running mean loss). `images`: the
    limited set (uint8 [N, ...] on the device); batches of `settings.batch_size`,
    a fresh permutation per epoch, the incomplete last batch dropped.
    """
    n = images.shape[0]
    batch = min(int(settings.batch_size), n)
    per_epoch = max(n // batch, 1)
    opt_state = tx.init(params)
    total, count, last, ascents = 0.0, 0, 0.0, 0
    pending = []
    epoch, steps = 0, 0
    for epoch in range(1, int(settings.cascade_max_epochs) + 1):
        pkey, ekey = jax.random.split(jax.random.fold_in(key, epoch))
        perm = jax.random.permutation(pkey, n)
        stop = False
        for b in range(per_epoch):
            idx = perm[b * batch:(b + 1) * batch]
            params, batch_stats, opt_state, loss = step(
                params, batch_stats, opt_state, fp_variables, trainable, images[idx],
                jax.random.fold_in(ekey, b))
            pending.append(loss)
            steps += 1
            if b % int(settings.cascade_check_every) == 0:
                total += float(np.sum(jax.device_get(pending)))
                count += len(pending)
                pending = []
                mean = total / count
                ascents = ascents + 1 if (mean > last or abs(mean - last) < settings.cascade_gap) else 0
                last = mean
                if on_check is not None:
                    on_check(epoch, mean)
                if ascents >= int(settings.cascade_patience):
                    stop = True
                    break
        if stop:
            break
    if pending:
        total += float(np.sum(jax.device_get(pending)))
        count += len(pending)
    return params, batch_stats, epoch, steps, total / max(count, 1)


def ldnq(model: nn.Module, params, batch_stats, images, mask, *, settings: Settings = Settings(),
         preprocess: Callable[[Array, Array], Array] | None = None,
         tx: optax.GradientTransformation | None = None, key: Array | None = None,
         log: Callable[[str], None] = print, progress=None) -> LdnqResult:
    """Quantize a trained Flax model layer by layer with L-DNQ; returns the new params.

    model, params, batch_stats: the full-precision network; images: the limited
    data [N, ...] as the model's preprocessing expects them (e.g. uint8);
    mask: bools like `params`, True for the kernels (and biases) to quantize;
    preprocess(key, images) -> model inputs (augmentation + normalisation,
    jittable; default: float32 cast); tx: cascade optimizer (default SGD 1e-3,
    momentum 0.9, weight decay 5e-4). `progress` (a tqdm bar over layers, or
    None) is updated once per layer; `log` gets one line per layer.
    """
    if preprocess is None:
        def preprocess(key, images):
            del key
            return jnp.asarray(images, jnp.float32)
    if tx is None:
        tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(1e-3, momentum=0.9))
    key = jax.random.PRNGKey(0) if key is None else key
    images = jnp.asarray(images)
    levels = int(settings.levels)
    quantizers.pow2_codebook(levels)  # validates levels
    fp_variables = {"params": params, "batch_stats": batch_stats}
    sample = preprocess(key, images[:1])
    layers = quantizable_layers(model, params, batch_stats, sample, mask)
    n_h = int(settings.hessian_images) or images.shape[0]
    n_h = min(n_h, images.shape[0])
    hbatch = min(int(settings.batch_size), n_h)
    step = _make_cascade_step(model, tx, preprocess)
    frozen: set = set()
    reports, total_steps = [], 0
    for i, (spec, with_bias) in enumerate(layers):
        lkey = jax.random.fold_in(key, i)
        if progress is not None:
            progress.set_postfix_str(f"{spec.name}: Hessian")
        hfn = _make_hessian_fn(model, spec, with_bias, preprocess, str(settings.hessian_order))
        variables = {"params": params, "batch_stats": batch_stats}
        h_images = images if n_h == images.shape[0] else \
            images[jax.random.permutation(jax.random.fold_in(lkey, 2 << 20), images.shape[0])[:n_h]]
        h_sum, rows = 0.0, 0.0
        for start in range(0, n_h, hbatch):
            s, r = hfn(variables, h_images[start:start + hbatch], jax.random.fold_in(lkey, start))
            h_sum, rows = h_sum + s, rows + r
        h = h_sum / rows
        layer = _get(params, spec.path)
        kernel = layer["kernel"]
        theta0 = kernel_matrix(kernel, layer["bias"] if with_bias else None)
        if progress is not None:
            progress.set_postfix_str(f"{spec.name}: ADMM")
        res = admm(h, theta0, levels, int(settings.admm_iterations), int(settings.admm_patience),
                   float(settings.admm_tol), int(settings.projection_iterations),
                   float(settings.projection_tol))
        new_kernel, new_bias = matrix_kernel(res.theta, kernel.shape, with_bias)
        new_layer = dict(layer, kernel=new_kernel.astype(kernel.dtype))
        frozen.add(spec.name + "/kernel")
        if with_bias:
            new_layer["bias"] = new_bias.astype(layer["bias"].dtype)
            frozen.add(spec.name + "/bias")
        params = _set(params, spec.path, new_layer)
        epochs = steps = 0
        loss = float("nan")
        if settings.cascade:
            # the code: this layer's bias, registered after its weight, trains in this step
            trainable = _trainable(params, frozen - {spec.name + "/bias"} if settings.cascade_own_bias
                                   else frozen)
            def on_check(epoch, mean, name=spec.name):
                if progress is not None:
                    progress.set_postfix_str(f"{name}: cascade epoch {epoch}, loss {mean:.4g}")
            params, batch_stats, epochs, steps, loss = cascade_finetune(
                step, params, batch_stats, fp_variables, trainable, images, tx,
                jax.random.fold_in(lkey, 1 << 20), settings, on_check)
            total_steps += steps
        report = LayerReport(spec.name, tuple(kernel.shape), float(res.naive_objective),
                             float(res.objective), int(res.iterations), float(res.alpha), epochs,
                             steps, loss)
        reports.append(report)
        log(f"layer {i + 1}/{len(layers)} " + report.line())
        if progress is not None:
            progress.update(1)
    return LdnqResult(params, batch_stats, reports, total_steps)
