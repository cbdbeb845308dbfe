"""PD-QAT: primal-dual quantization-aware training with output and layer-wise
proximity constraints (Hounie, Elenter & Ribeiro, ICASSP'23; repo con-qat,
METHODS.md §5).

Problem (one network, shared latent weights W, one BatchNorm set per precision):

    min_W CE(f^32_W)  s.t.  D_out = CE_soft(f^b_W, softmax f^32_W) <= eps_out,
                            D_l   = mean (z^32_l - z^b_l)^2       <= eps_l   (layer-wise)

solved on the Lagrangian

    L(W, lam) = CE(f^32) + lam_out (D_out - eps_out) + sum_l lam_l (D_l - eps_l)

by Adam (the configured optimizer) on W every step and projected dual ascent
lam <- relu(lam + dual_lr * s_hat), s_hat the mean slack D - eps (`dual_ascent`).
lam_out starts at 1, every lam_l at 0.

Weights (`pdqat_weight`), E = stop_grad(mean|W|):
    low precision:  E (2 q_b(tanh W / (2 max|tanh W|) + 1/2) - 1), STE through the rounding;
    high precision: E tanh W / max|tanh W| (con-qat's 32-bit branch of the same
                    quantizer; the paper only says the weights are shared, so the
                    code's map is the default; `fp_weights='identity'` uses W itself).
Activations: the model quantizes them (q_b(clip(x, 0, 1)) at quantized conv
inputs) in its low-precision pass; see `jaxquant.models.resnet20q`.

Layer outputs (con-qat `get_activations` / `eval_layers`): z^b_l =
q_b(clip(conv^b_l(x^b_l), 0, 1)) from the low-precision pass and z^32_l =
clip(conv^32_l(x^b_l), 0, 1), the full-precision layer fed the *same* quantized
input x^b_l, both before BatchNorm. Two deviations from the code, on purpose:
con-qat compares conv0's low-precision output after bn1 (but the full-precision
one without it), and its shortcut constraint re-quantizes conv1's output instead
of the shortcut's (a bug); here every layer is compared the same way.

Gradient routing (`routing`):
- 'high' (default, the code): shared weights get gradients only through the
  high-precision pass (CE, the soft target softmax f^32 of D_out, z^32_l of
  D_l); the low-precision pass trains only its own BatchNorm set (params
  matching `low_precision_params`). The paper does not specify the routing.
- 'both': the low-precision pass also sends (straight-through) gradients to W
  and every other parameter it uses.
`detach_target=True` stops the gradient through softmax f^32 (con-qat's
train_pd.py without --grads_wrt_high; train_pd_layers.py, the paper's script,
does not detach).

Dual updates (`dual_update`):
- 'epoch' (default): the slacks of the epoch's training batches are averaged and
  applied once, at the epoch boundary. con-qat instead recomputes the mean slack
  over the whole train split after the epoch, with the BatchNorm running
  statistics and frozen weights; here each batch's slack is measured at the
  weights of its own step, in training mode (batch statistics), on the augmented
  batch -- a one-pass approximation of the same average.
- 'step': lam <- relu(lam + dual_lr * slack of the batch) after every step.

The dual variables live in the latent: latent = {'params': W, 'duals': lam}.
The gradient of L with respect to lam is exactly the slack, so `tx` routes the
params' gradients to the configured optimizer and the duals' gradients (the
slacks) to `dual_ascent`. `final_state` reports the final lam (and the layers
ranked by lam_l, largest first) for `config.quant.full_precision_layers`.

Model contract (met by `resnet20q`): `apply(..., low_precision=bool)` switches
the BatchNorm set and activation quantization; for layer-wise constraints the
model sows `<layer>_input` / `<layer>_output` into 'intermediates' and accepts
`layer_inputs` (see `jaxquant.models.resnet20q`). Every quantized layer (a masked
`<layer>/kernel`) that sows an output gets a constraint; others (none in
resnet20q's configs) keep lam_l at its initial value.
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.masks import path_str
from jaxquant.methods import checks
from jaxquant.methods.base import (Context, LossAux, Method, as_mask_fn, cross_entropy, masked_map,
                                   method_options)

Params = Any
Array = jax.Array

# Table 1 of the paper (CIFAR-10, ResNet-20q): constraint levels per bit width.
PAPER_EPS_OUT = {8: 1 / 255, 4: 0.1, 2: 0.7, 1: 0.9}
PAPER_EPS_LAYER = {8: 0.1, 4: 0.5, 2: 1 / 3, 1: 1.0}
ROUTINGS = ("high", "both")
DUAL_UPDATES = ("epoch", "step")
FP_WEIGHTS = ("tanh", "identity")
# Default: BatchNorm parameters of the low-precision set (not ending in `_fp`).
LOW_PRECISION_PARAMS = (r"(.*/)?bn[^/]*(?<!_fp)/[^/]+",)
_INPUT, _OUTPUT = "_input", "_output"


def _unit(w: Array) -> Array:
    """tanh w / (2 max|tanh w|) + 1/2, in [0, 1]."""
    t = jnp.tanh(w)
    return t / (2.0 * jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(t.dtype).tiny)) + 0.5


def _scale(w: Array) -> Array:
    return jax.lax.stop_gradient(jnp.mean(jnp.abs(w)))


def pdqat_weight(w: Array, bits: int, ste: bool = False) -> Array:
    """Low-precision weights: E (2 q_b(tanh w / (2 max|tanh w|) + 1/2) - 1), E = sg(mean|w|).

    With `ste`, straight through the rounding only (true gradient through tanh
    and the max). For b >= 2 this is `dorefa_weight(w, b, scale=True)`; at 1 bit
    con-qat rounds the same normalised weights (q_1 = round), which has the same
    levels ±E as E sign(w) but the gradient of the tanh map, not the identity.
    Any shape; returns w's shape.
    """
    bits = Q.check_bits(bits, "config.method.bits")
    if bits > 1:
        return Q.dorefa_weight(w, bits, scale=True, ste=ste)
    return _scale(w) * (2.0 * Q.uniform(_unit(w), 1, ste=ste) - 1.0)


def high_precision_weight(w: Array) -> Array:
    """con-qat's 32-bit weights: E tanh w / max|tanh w| = E (2 u - 1), u = `_unit(w)`."""
    return _scale(w) * (2.0 * _unit(w) - 1.0)


class DualAscentState(NamedTuple):
    count: jax.Array   # steps taken so far
    slack_sum: Any     # sum of the slacks (gradients) since the last dual update


def dual_ascent(learning_rate: float = 0.01, every_steps: int = 1) -> optax.GradientTransformation:
    """Projected dual ascent on Lagrange multipliers (PD-QAT, METHODS.md §5).

    lam <- relu(lam + learning_rate * mean(g)), applied every `every_steps` steps
    with the mean of the gradients g = dL/dlam = D - eps (the slacks) received
    since the last update (steps in between leave lam unchanged). every_steps = 1:
    per step; = steps per epoch: once per epoch.
    """
    every = max(int(every_steps), 1)

    def init(params):
        return DualAscentState(count=jnp.zeros([], jnp.int32),
                               slack_sum=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("dual_ascent needs the params: call tx.update(updates, state, params).")
        count = optax.safe_increment(state.count)
        acc = jax.tree.map(jnp.add, state.slack_sum, grads)
        now = count % every == 0
        updates = jax.tree.map(
            lambda lam, s: jnp.where(now, jax.nn.relu(lam + learning_rate * s / every) - lam,
                                     jnp.zeros_like(lam)), params, acc)
        acc = jax.tree.map(lambda s: jnp.where(now, jnp.zeros_like(s), s), acc)
        return updates, DualAscentState(count, acc)

    return optax.GradientTransformation(init, update)


def _flatten(tree) -> dict:
    return {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _nest(flat: dict) -> dict:
    """{'a/b': x} -> {'a': {'b': x}}."""
    out: dict = {}
    for name, x in flat.items():
        *parents, leaf = name.split("/")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = x
    return out


def _layer_values(intermediates, suffix: str) -> dict:
    """{layer: value} of the sown `<layer><suffix>` entries ('a/conv1_input/0' -> 'a/conv1')."""
    out = {}
    for name, x in _flatten(intermediates).items():
        name = re.sub(r"/\d+$", "", name)  # sow stores a tuple
        if name.endswith(suffix):
            out[name[: -len(suffix)]] = x
    return out


def quantized_layers(params, mask) -> list[str]:
    """Names of the layers with a quantized kernel: 'stage1_block0/conv1' for '.../conv1/kernel'."""
    return [p.rsplit("/", 1)[0] for p, m in zip(_flatten(params), jax.tree.leaves(mask))
            if m and p.endswith("/kernel") and "/" in p]


def _regex_mask(params, rules: Sequence[str]):
    regs = [re.compile(r) for r in rules]
    return jax.tree_util.tree_map_with_path(
        lambda p, _: any(r.fullmatch(path_str(p)) for r in regs), params)


def pdqat(optimizer: optax.GradientTransformation, bits: int, *, mask: Callable[[Params], Params],
          eps_out: float, eps_layer: float = 0.0, layerwise: bool = False,
          dual_lr: float = 0.01, dual_every_steps: int = 1, routing: str = "high",
          detach_target: bool = False, fp_weights: str = "tanh",
          low_precision_params: Sequence[str] = LOW_PRECISION_PARAMS,
          lambda_out_init: float = 1.0, lambda_layer_init: float = 0.0) -> Method:
    """The PD-QAT `Method` (see the module docstring for every option).

    `mask(params)` says which leaves are quantized (their layers get a layer-wise
    constraint when `layerwise`); `dual_every_steps` is 1 for per-step dual
    updates or the number of steps per epoch for per-epoch ones.
    """
    bits = Q.check_bits(bits, "config.method.bits")
    mask = as_mask_fn(mask)  # checks the mask against the params it is applied to
    if routing not in ROUTINGS:
        raise ConfigError(f"config.method.routing must be one of {', '.join(ROUTINGS)}; got {routing!r}.")
    if fp_weights not in FP_WEIGHTS:
        raise ConfigError(f"config.method.fp_weights must be one of {', '.join(FP_WEIGHTS)}; "
                          f"got {fp_weights!r}.")
    low_w = lambda w: pdqat_weight(w, bits, ste=True)  # noqa: E731
    hard_w = lambda w: pdqat_weight(w, bits)  # noqa: E731
    high_w = high_precision_weight if fp_weights == "tanh" else (lambda w: w)

    def init(params):
        duals = {"out": jnp.asarray(lambda_out_init, jnp.float32)}
        if layerwise:
            duals["layers"] = _nest({n: jnp.asarray(lambda_layer_init, jnp.float32)
                                     for n in quantized_layers(params, mask(params))})
        return {"params": params, "duals": duals}

    def forward(latent, step):
        del step
        params = latent["params"]
        return masked_map(low_w, mask(params), params)

    def project(latent):
        params = latent["params"]
        return masked_map(hard_w, mask(params), params)

    def low_pass_params(params):
        """The low-precision pass's weights, with gradients routed by `routing`."""
        weights = forward({"params": params}, 0)
        if routing == "both":
            return weights
        own = _regex_mask(params, low_precision_params)
        return jax.tree.map(lambda o, w: w if o else jax.lax.stop_gradient(w), own, weights)

    def loss(method, apply_fn, latent, batch_stats, images, labels, step):
        del method, step
        params, duals = latent["params"], latent["duals"]
        mutable = ["batch_stats", "intermediates"] if layerwise else ["batch_stats"]
        try:
            logits_b, low = apply_fn({"params": low_pass_params(params), "batch_stats": batch_stats},
                                     images, train=True, low_precision=True, mutable=mutable)
        except TypeError as e:
            if "low_precision" not in str(e):
                raise
            raise ConfigError("config.method.name='pdqat' needs a model with switchable precision "
                              "(apply(..., low_precision=bool)), such as config.model.name="
                              "'resnet20q'; the model of this config has none.") from None
        extra = {}
        if layerwise:
            inputs = _layer_values(low.get("intermediates", {}), _INPUT)
            if not inputs:
                raise ConfigError("config.method.layerwise=True needs a model that sows layer "
                                  "inputs/outputs (config.model.name='resnet20q').")
            extra = {"layer_inputs": _nest(inputs)}
        logits_32, high = apply_fn(
            {"params": masked_map(high_w, mask(params), params), "batch_stats": low["batch_stats"]},
            images, train=True, low_precision=False, mutable=mutable, **extra)
        ce = cross_entropy(logits_32, labels)
        target = jax.nn.softmax(logits_32)
        if detach_target:
            target = jax.lax.stop_gradient(target)
        d_out = optax.softmax_cross_entropy(logits_b, target).mean()
        lagrangian = ce + duals["out"] * (d_out - eps_out)
        metrics = {"ce_fp": ce, "d_out": d_out, "lambda_out": duals["out"],
                   "train_accuracy_fp": jnp.mean(jnp.argmax(logits_32, -1) == labels)}
        if layerwise:
            z_b = _layer_values(low["intermediates"], _OUTPUT)
            z_32 = _layer_values(high["intermediates"], _OUTPUT)
            lams = _flatten(duals["layers"])
            lams = {n: lam for n, lam in lams.items() if n in z_b}  # layers that sow outputs
            d = {n: jnp.mean(jnp.square(z_32[n] - z_b[n])) for n in lams}
            lagrangian += sum(lams[n] * (d[n] - eps_layer) for n in lams)
            if lams:
                metrics.update(d_layer_mean=jnp.mean(jnp.stack(list(d.values()))),
                               lambda_layer_max=jnp.max(jnp.stack(list(lams.values()))))
            metrics.update({f"lambda/{n}": lams[n] for n in lams})
        return lagrangian, LossAux(logits_b, high["batch_stats"], metrics)

    def labels(latent):
        return {"params": jax.tree.map(lambda _: "primal", latent["params"]),
                "duals": jax.tree.map(lambda _: "dual", latent["duals"])}

    tx = optax.partition({"primal": optimizer, "dual": dual_ascent(dual_lr, dual_every_steps)},
                         labels)

    def final_state(latent) -> dict:
        duals = latent["duals"]
        layers = {n: float(v) for n, v in _flatten(duals.get("layers", {})).items()}
        return {"lambda_out": float(duals["out"]), "lambda_layers": layers,
                "ranking": sorted(layers, key=lambda n: -layers[n])}

    return Method(init=checks.float_params(init), forward=forward, project=project, tx=tx, loss=loss,
                  final_state=final_state)


# Every `config.method` key PD-QAT reads, with its default (eps_* None: the
# paper's value for the bit width, PAPER_EPS_OUT / PAPER_EPS_LAYER).
DEFAULTS = {"pdqat": dict(
    bits=4, eps_out=None, eps_layer=None, layerwise=False, dual_lr=0.01, dual_update="epoch",
    routing="high", detach_target=False, fp_weights="tanh",
    low_precision_params=LOW_PRECISION_PARAMS, lambda_out_init=1.0, lambda_layer_init=0.0)}


def from_config(name: str, ctx: Context) -> Method:
    """PD-QAT from `ctx.config.method`: bits, eps_out, eps_layer, layerwise, dual_lr,
    dual_update ('epoch' | 'step'), routing, detach_target, fp_weights,
    low_precision_params, lambda_out_init, lambda_layer_init."""
    get = method_options("pdqat", name, ctx, DEFAULTS).get
    bits = get("bits")
    dual_update = get("dual_update")
    if dual_update not in DUAL_UPDATES:
        raise ConfigError(f"config.method.dual_update must be one of {', '.join(DUAL_UPDATES)}; "
                          f"got {dual_update!r}.")
    eps_out = get("eps_out")
    eps_layer = get("eps_layer")
    return pdqat(ctx.optimizer, bits, mask=ctx.mask,
                 eps_out=float(PAPER_EPS_OUT.get(bits, 0.1) if eps_out is None else eps_out),
                 eps_layer=float(PAPER_EPS_LAYER.get(bits, 0.1) if eps_layer is None else eps_layer),
                 layerwise=bool(get("layerwise")), dual_lr=float(get("dual_lr")),
                 dual_every_steps=ctx.steps_per_epoch if dual_update == "epoch" else 1,
                 routing=get("routing"), detach_target=bool(get("detach_target")),
                 fp_weights=get("fp_weights"),
                 low_precision_params=tuple(get("low_precision_params")),
                 lambda_out_init=float(get("lambda_out_init")),
                 lambda_layer_init=float(get("lambda_layer_init")))


__all__ = ["pdqat", "pdqat_weight", "high_precision_weight", "dual_ascent", "DualAscentState",
           "quantized_layers", "PAPER_EPS_OUT", "PAPER_EPS_LAYER"]
