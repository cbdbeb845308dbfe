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
input x^b_l, both before BatchNorm: every layer compared the same way (default).
con-qat differs at a block's first conv: its z^b is taken after that conv's
BatchNorm, q(clip(bn(conv^b x))), against the same z^32 = clip(conv^32 x) without
it -- `zb_after_bn=True` (the model sows `<layer>_output_bn`; the table configs).
(The repo's `retrain` branch and commits 2aa4424..d363479 also compared the shortcut
against the re-quantized second-conv output, a bug fixed on master in bd199a4; here
the shortcut's own output is used, as on master.)
`detach_low_outputs`: regexes of layers whose z^b is stop-gradiented in D_l, so
their constraint trains only the high-precision side; con-qat detaches the second
conv's and the shortcut's (r'.*/conv2', r'.*/shortcut' in resnet20q names), not the
first conv's. Default: none (the paper's D_l differentiates both sides).

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
- 'epoch_eval' (con-qat train_pd_layers.py; the table configs): after each epoch,
  an eval-mode pass over the training split at the epoch's final weights (BatchNorm
  running statistics) gives the mean slacks s_hat = mean D - eps, and
  lam <- relu(lam + dual_lr s_hat); through `Method.epoch_end`, so it needs the
  trainer (or a loop that calls `epoch_end`). The pass here is over un-augmented
  images; con-qat iterates its training loader, random crop + flip included.
- 'epoch' (default): the slacks of the epoch's training batches are averaged and
  applied once, at the epoch boundary -- each measured at the weights of its own
  step, in training mode, on the augmented batch: a one-pass approximation of the
  same average that needs no extra pass (and works without the trainer).
- 'step': lam <- relu(lam + dual_lr * slack of the batch) after every step.
- 'none': lam stays at its initial value (the baselines below).

Baselines (`baseline`, con-qat's Table 1 baseline column, `BASELINES`): two
scripts produced it, both with the bit list (b, 32), switchable BatchNorm and
E-scaled weights at every bit width, i.e. this method's passes:
- 'anyprec' (train_anyprec.py, seeds 0-2): loss CE(f^32) + CE_soft(f^b, sg softmax
  f^32), both passes update the shared weights (routing='both', detach_target=True,
  lambda_out = 1 fixed);
- 'vanilla' (train_vanilla.py --vanilla, seeds 3-5): the primal-dual loop with
  lambda_out fixed at 1 and no dual ascent (routing='high', detach_target=False).
The keys a baseline fixes take its values; setting one of them to a value other
than its default and the baseline's is a ConfigError.

The dual variables live in the latent: latent = {'params': W, 'duals': lam}.
The gradient of L with respect to lam is exactly the slack, so `tx` routes the
params' gradients to the configured optimizer and the duals' gradients (the
slacks) to `dual_ascent`. `final_state` reports the final lam (and the layers
ranked by lam_l, largest first) for `config.quant.full_precision_layers`; with
'epoch_eval', `epoch_end` updates the duals and their gradients are dropped.

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
DUAL_UPDATES = ("epoch", "step", "epoch_eval", "none")  # config.method.dual_update
_FACTORY_DUAL_UPDATES = ("train", "epoch_eval", "none")  # pdqat(dual_update=...)
FP_WEIGHTS = ("tanh", "identity")
# Default: BatchNorm parameters of the low-precision set (not ending in `_fp`).
LOW_PRECISION_PARAMS = (r"(.*/)?bn[^/]*(?<!_fp)/[^/]+",)
_INPUT, _OUTPUT, _OUTPUT_BN = "_input", "_output", "_output_bn"
# con-qat's two baseline scripts as PD-QAT options (`config.method.baseline`); eps_out = 0
# makes the logged loss CE(f^32) + D_out (lambda_out is fixed, so eps only shifts it).
BASELINES = {
    # train_anyprec.py: CE(f^32) + CE_soft(f^b, sg softmax f^32), both passes train W.
    "anyprec": dict(routing="both", detach_target=True, dual_update="none", layerwise=False,
                    lambda_out_init=1.0, eps_out=0.0),
    # train_vanilla.py --vanilla: the primal-dual loop with lambda_out = 1 and no dual ascent.
    "vanilla": dict(routing="high", detach_target=False, dual_update="none", layerwise=False,
                    lambda_out_init=1.0, eps_out=0.0),
}


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


def _per_example_mean_square(a: Array, b: Array) -> Array:
    """mean over every axis but the first of (a - b)^2: [batch, ...] -> [batch]."""
    return jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim)))


def pdqat(optimizer: optax.GradientTransformation, bits: int, *, mask: Callable[[Params], Params],
          eps_out: float, eps_layer: float = 0.0, layerwise: bool = False,
          dual_lr: float = 0.01, dual_update: str = "train", dual_every_steps: int = 1,
          routing: str = "high", detach_target: bool = False, fp_weights: str = "tanh",
          zb_after_bn: bool = False, detach_low_outputs: Sequence[str] = (),
          low_precision_params: Sequence[str] = LOW_PRECISION_PARAMS,
          lambda_out_init: float = 1.0, lambda_layer_init: float = 0.0) -> Method:
    """The PD-QAT `Method` (see the module docstring for every option).

    `mask(params)` says which leaves are quantized (their layers get a layer-wise
    constraint when `layerwise`). `dual_update`: 'train' (ascent on the training
    batches' slacks, averaged over `dual_every_steps` steps: 1 = per step, steps per
    epoch = per epoch), 'epoch_eval' (the `epoch_end` hook: mean slack of an eval-mode
    pass over the training split) or 'none' (lambda fixed at its initial value).
    """
    bits = Q.check_bits(bits, "config.method.bits")
    mask = as_mask_fn(mask)  # checks the mask against the params it is applied to
    for key, value, valid in (("routing", routing, ROUTINGS), ("fp_weights", fp_weights, FP_WEIGHTS),
                              ("dual_update", dual_update, _FACTORY_DUAL_UPDATES)):
        if value not in valid:
            raise ConfigError(f"config.method.{key} must be one of {', '.join(valid)}; got {value!r}.")
    low_w = lambda w: pdqat_weight(w, bits, ste=True)  # noqa: E731
    hard_w = lambda w: pdqat_weight(w, bits)  # noqa: E731
    high_w = high_precision_weight if fp_weights == "tanh" else (lambda w: w)
    detached = [re.compile(r) for r in detach_low_outputs]

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

    def passes(apply_fn, params, batch_stats, images, train: bool):
        """Both passes on one batch: (logits_b, logits_32, {layer: (z_b, z_32)}, batch_stats).

        train=True: batch statistics, each pass updates its BatchNorm set's running
        statistics; train=False: running statistics (the eval-mode pass of 'epoch_eval').
        """
        mutable = (["batch_stats"] if train else []) + (["intermediates"] if layerwise else [])
        kw = dict(train=train, mutable=mutable) if mutable else dict(train=train)
        try:
            out = apply_fn({"params": low_pass_params(params), "batch_stats": batch_stats},
                           images, low_precision=True, **kw)
        except TypeError as e:
            if "low_precision" not in str(e):
                raise
            raise ConfigError("config.method.name='pdqat' needs a model with switchable precision "
                              "(apply(..., low_precision=bool)), such as config.model.name="
                              "'resnet20q'; the model of this config has none.") from None
        logits_b, low = out if mutable else (out, {})
        extra = {}
        if layerwise:
            inputs = _layer_values(low.get("intermediates", {}), _INPUT)
            if not inputs:
                raise ConfigError("config.method.layerwise=True needs a model that sows layer "
                                  "inputs/outputs (config.model.name='resnet20q').")
            extra = {"layer_inputs": _nest(inputs)}
        stats = low.get("batch_stats", batch_stats)
        out = apply_fn({"params": masked_map(high_w, mask(params), params), "batch_stats": stats},
                       images, low_precision=False, **kw, **extra)
        logits_32, high = out if mutable else (out, {})
        pairs = {}
        if layerwise:
            z_b = _layer_values(low["intermediates"], _OUTPUT)
            if zb_after_bn:  # con-qat: a block's first conv is compared after its BatchNorm
                z_b.update(_layer_values(low["intermediates"], _OUTPUT_BN))
            z_b = {n: jax.lax.stop_gradient(z) if any(r.fullmatch(n) for r in detached) else z
                   for n, z in z_b.items()}
            z_32 = _layer_values(high["intermediates"], _OUTPUT)
            pairs = {n: (z_b[n], z_32[n]) for n in z_b}
        return logits_b, logits_32, pairs, high.get("batch_stats", stats)

    def layer_duals(duals, pairs):
        """{layer: lam_l} of the constrained layers that sow outputs (others keep their lam)."""
        return {n: lam for n, lam in _flatten(duals.get("layers", {})).items() if n in pairs}

    def loss(method, apply_fn, latent, batch_stats, images, labels, step):
        del method, step
        params, duals = latent["params"], latent["duals"]
        logits_b, logits_32, pairs, new_stats = passes(apply_fn, params, batch_stats, images, True)
        ce = cross_entropy(logits_32, labels)
        target = jax.nn.softmax(logits_32)
        if detach_target:
            target = jax.lax.stop_gradient(target)
        d_out = optax.softmax_cross_entropy(logits_b, target).mean()
        lagrangian = ce + duals["out"] * (d_out - eps_out)
        metrics = {"ce_fp": ce, "d_out": d_out, "lambda_out": duals["out"],
                   "train_accuracy_fp": jnp.mean(jnp.argmax(logits_32, -1) == labels)}
        if layerwise:
            lams = layer_duals(duals, pairs)
            d = {n: jnp.mean(jnp.square(pairs[n][1] - pairs[n][0])) for n in lams}
            lagrangian += sum(lams[n] * (d[n] - eps_layer) for n in lams)
            if lams:
                metrics.update(d_layer_mean=jnp.mean(jnp.stack(list(d.values()))),
                               lambda_layer_max=jnp.max(jnp.stack(list(lams.values()))))
            metrics.update({f"lambda/{n}": lams[n] for n in lams})
        return lagrangian, LossAux(logits_b, new_stats, metrics)

    def eval_distances(apply_fn, latent, batch_stats, images, labels):
        """Per-example D_out and D_l in eval mode: {'out': [B], 'layers': {layer: [B]}}."""
        del labels
        logits_b, logits_32, pairs, _ = passes(apply_fn, latent["params"], batch_stats, images, False)
        d_out = optax.softmax_cross_entropy(logits_b, jax.nn.softmax(logits_32))
        return {"out": d_out, "layers": {n: _per_example_mean_square(z_32, z_b)
                                         for n, (z_b, z_32) in pairs.items()}}

    def epoch_end(latent, mean_over_train):
        """lam <- relu(lam + dual_lr (mean D - eps)), D over the training split in eval mode
        at the epoch's final weights (con-qat's dual update)."""
        mean = mean_over_train(eval_distances)
        duals = latent["duals"]
        new = {"out": jax.nn.relu(duals["out"] + dual_lr * (mean["out"] - eps_out))}
        if "layers" in duals:
            flat = _flatten(duals["layers"])
            new["layers"] = _nest({n: jax.nn.relu(lam + dual_lr * (mean["layers"][n] - eps_layer))
                                   if n in mean["layers"] else lam for n, lam in flat.items()})
        return {"params": latent["params"], "duals": new}

    def labels(latent):
        return {"params": jax.tree.map(lambda _: "primal", latent["params"]),
                "duals": jax.tree.map(lambda _: "dual", latent["duals"])}

    dual_tx = (dual_ascent(dual_lr, dual_every_steps) if dual_update == "train"
               else optax.set_to_zero())  # 'epoch_eval': the hook; 'none': fixed
    tx = optax.partition({"primal": optimizer, "dual": dual_tx}, labels)

    def final_state(latent) -> dict:
        duals = latent["duals"]
        layers = {n: float(v) for n, v in _flatten(duals.get("layers", {})).items()}
        return {"lambda_out": float(duals["out"]), "lambda_layers": layers,
                "ranking": sorted(layers, key=lambda n: -layers[n])}

    return Method(init=checks.float_params(init), forward=forward, project=project, tx=tx, loss=loss,
                  final_state=final_state,
                  epoch_end=epoch_end if dual_update == "epoch_eval" else None)


# Every `config.method` key PD-QAT reads, with its default (eps_* None: the
# paper's value for the bit width, PAPER_EPS_OUT / PAPER_EPS_LAYER).
DEFAULTS = {"pdqat": dict(
    bits=4, baseline=None, eps_out=None, eps_layer=None, layerwise=False, dual_lr=0.01,
    dual_update="epoch", routing="high", detach_target=False, fp_weights="tanh",
    zb_after_bn=False, detach_low_outputs=(), low_precision_params=LOW_PRECISION_PARAMS,
    lambda_out_init=1.0, lambda_layer_init=0.0)}


def _resolve_baseline(options: dict) -> dict:
    """`options` with the keys a `baseline` fixes. A config that sets one of them to a
    value other than both its default and the baseline's is a ConfigError naming both
    (a value equal to the default reads as unset: `jaxquant.main` completes
    config.method with every default)."""
    name = options["baseline"]
    if name is None:
        return options
    if name not in BASELINES:
        raise ConfigError(f"config.method.baseline must be None (PD-QAT) or one of "
                          f"{', '.join(BASELINES)}; got {name!r}.")
    for key, value in BASELINES[name].items():
        if options[key] not in (value, DEFAULTS["pdqat"][key]):
            raise ConfigError(
                f"config.method.baseline={name!r} sets {key}={value!r}, but config.method.{key}="
                f"{options[key]!r}: remove config.method.{key} (or the baseline).")
    return dict(options, **BASELINES[name])


def from_config(name: str, ctx: Context) -> Method:
    """PD-QAT from `ctx.config.method`: bits, baseline (None | 'anyprec' | 'vanilla'),
    eps_out, eps_layer, layerwise, dual_lr, dual_update ('epoch' | 'step' | 'epoch_eval' |
    'none'), routing, detach_target, fp_weights, zb_after_bn, detach_low_outputs,
    low_precision_params, lambda_out_init, lambda_layer_init."""
    options = _resolve_baseline(method_options("pdqat", name, ctx, DEFAULTS))
    get = options.get
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
                 dual_update="train" if dual_update in ("epoch", "step") else dual_update,
                 dual_every_steps=ctx.steps_per_epoch if dual_update == "epoch" else 1,
                 routing=get("routing"), detach_target=bool(get("detach_target")),
                 fp_weights=get("fp_weights"), zb_after_bn=bool(get("zb_after_bn")),
                 detach_low_outputs=tuple(get("detach_low_outputs")),
                 low_precision_params=tuple(get("low_precision_params")),
                 lambda_out_init=float(get("lambda_out_init")),
                 lambda_layer_init=float(get("lambda_layer_init")))


__all__ = ["pdqat", "pdqat_weight", "high_precision_weight", "dual_ascent", "DualAscentState",
           "quantized_layers", "PAPER_EPS_OUT", "PAPER_EPS_LAYER", "BASELINES"]
