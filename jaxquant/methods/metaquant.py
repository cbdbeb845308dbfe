"""MetaQuant: a shared meta network learns the gradient through the quantizer (Chen et al., NeurIPS'19).

METHODS.md §3, checked against the released code (csyhhu/MetaQuant). A quantized
weight W is run through a pre-quantization map A and a quantizer Q:

  dorefa: W̃ = A(W) = tanh(W) / (2 sg(max|tanh W|)) + ½,  Ŵ = 2 round((2^k−1) W̃)/(2^k−1) − 1,
          calibration c = (1 − tanh² W) / max|tanh W|
  bwn:    W̃ = W,  Ŵ = sg(mean|W|) · sign(W),  c = 1

and, instead of the straight-through gradient, W moves along c ⊙ M, where the meta
network (one for all layers, applied to every weight element) outputs

  fcgrad:  M = FC(g_Ŵ)                       (1→h→1, no bias, no nonlinearity)
  multifc: M = g_Ŵ ⊙ FC(W̃)                   (1→h→h→1, no bias, no nonlinearity)
  lstmfc:  M = g_Ŵ ⊙ Linear(LSTM(W̃))         (hidden h; LSTM state kept per element;
                                              LSTM and Linear with biases, as PyTorch's)

from the previous iteration's g_Ŵ = ∂L/∂Ŵ and W̃, both detached.

The step (paper, eq. 6 / Alg. 1; variant='paper'):
  M_t = meta_φ(g_Ŵ^{t−1}, W̃^{t−1});  u_t = base_optimizer(c ⊙ M_t)  (= −lr·π_t)
  W_fwd = W + u_t + (−lr c⊙M_t − sg(−lr c⊙M_t))   (value W + u_t; ∂/∂φ through −lr c⊙M_t)
  L = loss(Q(A(W_fwd)));  φ ← Adam(meta_lr) step on ∂L/∂φ;  W ← sg(W_fwd).
The released code's variant (variant='released') runs the forward at W + u_{t−1} (the
previous step's refined gradient, one step out of sync: meta-quantize.py builds the
forward weight from `weight.grad`, which still holds last step's refinement) and commits
W ← W + u_t. The first step, with no previous gradient, leaves W and φ unchanged (as the
code does).

Which one: the library default is 'paper' (the algorithm the paper states); Table 1 was
produced by the released code, so every Table-1 config (configs/metaquant_cifar.py and
its per-cell files, metaquant_imagenet_resnet18.py, launch/metaquant.sh) sets
variant='released'. docs/fidelity.md lists the remaining differences.

How it fits `Method` without any trainer support: the latent is
  {'weights': the model's params, 'meta': φ, 'memory': one dict per quantized leaf}
with memory = {'grad': g_Ŵ^{t−1}, 'pre': W̃^{t−1} (multifc/lstmfc), 'h', 'c' (lstmfc,
shape W.shape + (h,)), 'update': the u applied in the forward}. `forward` returns
Ŵ + (W − sg(W)), so the gradient the trainer takes w.r.t. a quantized weight leaf is
exactly g_Ŵ (W itself reaches the loss only through stop-gradients); its gradient
w.r.t. φ is ∂L/∂φ by ordinary autodiff through −lr c⊙M. `tx.update` then commits W,
stores the new memory, steps φ with Adam, and (paper variant) precomputes u_{t+1}
with the base optimizer, whose state for W lives in the tx state. Unquantized leaves
(BN, biases, per the mask) take the base optimizer's plain step.

Notebook use::

    method = jq.metaquant(optax.sgd(1e-3), learning_rate=1e-3, mask=my_mask)
    latent = method.init(params); state = method.tx.init(latent)
    grads = jax.grad(lambda l: loss(method.forward(l, step)))(latent)
    updates, state = method.tx.update(grads, state, latent)
    latent = optax.apply_updates(latent, updates); eval on method.project(latent)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxquant import quantizers as Q
from jaxquant.config_keys import check_choice
from jaxquant.errors import ConfigError
from jaxquant.methods import checks
from jaxquant.methods.base import Context, MaskLike, Method, as_mask_fn, method_options

Params = Any
Array = jax.Array
sg = jax.lax.stop_gradient

FORWARDS = ("dorefa", "bwn")
META_NETS = ("multifc", "fcgrad", "lstmfc")
VARIANTS = ("paper", "released")

# Every config.method key `from_config` accepts, with its default.
DEFAULTS = {"metaquant": dict(forward="dorefa", bits=1, meta_net="multifc", meta_lr=1e-3,
                              hidden=100, variant="paper")}


# --------------------------------------------------------------------------- meta nets

def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def init_meta_net(key: Array, kind: str = "multifc", hidden: int = 100) -> dict:
    """Meta-network parameters φ, initialised as PyTorch's nn.Linear / nn.LSTM.

    fcgrad:  {'w1': (1, h), 'w2': (h, 1)}
    multifc: {'w1': (1, h), 'w2': (h, h), 'w3': (h, 1)}
    lstmfc:  {'w_ih': (1, 4h), 'w_hh': (h, 4h), 'b': (4h,), 'w_out': (h, 1), 'b_out': (1,)}
             (gate order i, f, g, o; b = b_ih + b_hh of PyTorch)
    Every weight ~ U(−1/√fan_in, 1/√fan_in) (LSTM: U(−1/√h, 1/√h)).
    """
    check_choice(kind, META_NETS, "config.method.meta_net")
    h = int(hidden)
    k = jax.random.split(key, 5)
    if kind == "fcgrad":
        return dict(w1=_uniform(k[0], (1, h), 1.0), w2=_uniform(k[1], (h, 1), h ** -0.5))
    if kind == "multifc":
        return dict(w1=_uniform(k[0], (1, h), 1.0), w2=_uniform(k[1], (h, h), h ** -0.5),
                    w3=_uniform(k[2], (h, 1), h ** -0.5))
    b = h ** -0.5
    return dict(w_ih=_uniform(k[0], (1, 4 * h), b), w_hh=_uniform(k[1], (h, 4 * h), b),
                b=_uniform(k[2], (4 * h,), b) + _uniform(k[3], (4 * h,), b),
                w_out=_uniform(k[4], (h, 1), b), b_out=_uniform(jax.random.fold_in(key, 7), (1,), b))


def _lstm_cell(phi, x, h, c):
    """One PyTorch LSTM step, input size 1: x (n,), h, c (n, hidden) -> h', c'."""
    z = x[:, None] * phi["w_ih"] + h @ phi["w_hh"] + phi["b"]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def meta_gradient(phi: dict, kind: str, grad: Array, pre: Optional[Array] = None,
                  state: Optional[tuple] = None):
    """M = meta_φ(g_Ŵ, W̃), element-wise, and the new LSTM state (None unless lstmfc).

    grad, pre: any shape S (one layer's g_Ŵ and W̃); state: (h, c) of shape S + (hidden,).
    fcgrad: FC(g); multifc: g ⊙ FC(W̃); lstmfc: g ⊙ (LSTM(W̃; h, c) @ w_out + b_out).
    """
    # Without nonlinearities the FC nets are linear maps of a scalar: evaluating the
    # product of their matrices once (1x1) is the same function as running every
    # element through them, at O(h^2) instead of O(n h^2).
    if kind == "fcgrad":
        return grad * (phi["w1"] @ phi["w2"])[0, 0], None
    if kind == "multifc":
        return grad * pre * (phi["w1"] @ phi["w2"] @ phi["w3"])[0, 0], None
    shape = grad.shape
    g, x = grad.reshape(-1), pre.reshape(-1)
    h, c = (s.reshape(g.shape[0], -1) for s in state)
    h, c = _lstm_cell(phi, x, h, c)
    out = h @ phi["w_out"] + phi["b_out"]
    return (g * out[:, 0]).reshape(shape), (h.reshape(*shape, -1), c.reshape(*shape, -1))


# --------------------------------------------------------------------------- forward quantizers

def pre_quantize(w: Array, forward: str = "dorefa") -> Array:
    """W̃ = A(W): dorefa tanh(W)/(2 sg(max|tanh W|)) + ½ (in [0, 1]); bwn W itself."""
    if forward == "bwn":
        return w
    t = jnp.tanh(w)
    return t / (2.0 * sg(jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(t.dtype).tiny))) + 0.5


def calibration(w: Array, forward: str = "dorefa") -> Array:
    """c = ∂Ŵ/∂W under the STE: dorefa (1 − tanh² W)/max|tanh W|, bwn 1 (detached)."""
    if forward == "bwn":
        return jnp.ones_like(w)
    t = jnp.tanh(sg(w))
    return (1.0 - t * t) / jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(t.dtype).tiny)


def quantize(w: Array, forward: str = "dorefa", bits: int = 1) -> Array:
    """Hard Ŵ = Q(A(W)): dorefa 2 q_k(W̃) − 1 (±1 at 1 bit), bwn mean|W|·sign(W)."""
    return Q.bwn(w) if forward == "bwn" else Q.dorefa_weight(w, bits)


def _quantize_ste(w: Array, forward: str, bits: int) -> Array:
    """Ŵ with the released code's STE (utils/quantize.py): dorefa value Q(A(w)), gradient
    2 ∂W̃/∂w = (1 − tanh² w)/sg(max|tanh w|) at every bit width; bwn sg(mean|w|)·sign(w)
    with gradient mean|w|·1_{|w| <= 1}."""
    if forward == "bwn":
        return Q.bwn_ste(w, "alpha_gated")
    return Q.dorefa_weight(w, bits, ste=True, detach_max=True, one_bit_backward="tanh")


# --------------------------------------------------------------------------- the method

class MetaQuantState(NamedTuple):
    """tx state: steps taken, base-optimizer states (quantized W; other leaves), meta Adam."""
    count: Array
    base_q: optax.OptState
    base_fp: optax.OptState
    meta: optax.OptState


def metaquant(optimizer: optax.GradientTransformation,
              learning_rate: optax.ScalarOrSchedule, *, mask: MaskLike = None,
              forward: str = "dorefa", bits: int = 1, meta_net: str = "multifc",
              meta_lr: float = 1e-3, hidden: int = 100, variant: str = "paper",
              seed: int = 0) -> Method:
    """MetaQuant (Chen et al., NeurIPS'19, eq. 6 / Alg. 1) as a `Method` on any params pytree.

    optimizer:     the base optimizer (SGD or Adam, lr included) that refines c ⊙ M into the
                   committed step u = −lr·π, and trains the unquantized leaves normally.
    learning_rate: the same lr (float or schedule of the step) for the meta path −lr c⊙M.
    mask:          params -> bools, True on quantized leaves (None: all leaves).
    forward 'dorefa' | 'bwn'; bits (dorefa); meta_net 'multifc' | 'fcgrad' | 'lstmfc';
    meta_lr (Adam on φ); hidden (meta width); variant 'paper' | 'released' (module docstring).
    """
    check_choice(forward, FORWARDS, "config.method.forward")
    check_choice(meta_net, META_NETS, "config.method.meta_net")
    check_choice(variant, VARIANTS, "config.method.variant")
    bits = Q.check_bits(bits, "config.method.bits")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"config.method.hidden must be a positive integer, got {hidden!r}.")
    mask_fn = as_mask_fn(mask)
    lr_fn = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    meta_opt = optax.adam(meta_lr)
    wants_pre, wants_lstm = meta_net != "fcgrad", meta_net == "lstmfc"

    def split(weights):
        """(treedef, leaves, quantized flags) of the model params."""
        leaves, treedef = jax.tree.flatten(weights)
        flags = [bool(m) for m in jax.tree.leaves(mask_fn(weights))]
        return treedef, leaves, flags

    def new_memory(w):
        mem = dict(grad=jnp.zeros_like(w), update=jnp.zeros_like(w))
        if wants_pre:
            mem["pre"] = jnp.zeros_like(w)
        if wants_lstm:
            mem["h"] = jnp.zeros((*w.shape, hidden), w.dtype)
            mem["c"] = jnp.zeros((*w.shape, hidden), w.dtype)
        return mem

    def meta_of(phi, mem):
        """(M, new LSTM state) from a leaf's memory, all inputs detached."""
        state = (sg(mem["h"]), sg(mem["c"])) if wants_lstm else None
        pre = sg(mem["pre"]) if wants_pre else None
        return meta_gradient(phi, meta_net, sg(mem["grad"]), pre, state)

    def init(params):
        _, leaves, flags = split(params)
        return dict(weights=params, meta=init_meta_net(jax.random.PRNGKey(seed), meta_net, hidden),
                    memory=[new_memory(w) for w, q in zip(leaves, flags) if q])

    def forward_fn(latent, step):
        treedef, leaves, flags = split(latent["weights"])
        lr = lr_fn(step)
        out, mems = [], iter(latent["memory"])
        for w, q in zip(leaves, flags):
            if not q:
                out.append(w)
                continue
            mem = next(mems)
            m, _ = meta_of(latent["meta"], mem)
            d = -lr * calibration(w, forward) * m
            w_fwd = sg(w + mem["update"]) + (d - sg(d))   # value W + u, ∂/∂φ through −lr c⊙M
            out.append(_quantize_ste(w_fwd, forward, bits) + (w - sg(w)))  # ∂L/∂W = g_Ŵ
        return jax.tree.unflatten(treedef, out)

    def project(latent):
        treedef, leaves, flags = split(latent["weights"])
        return jax.tree.unflatten(treedef, [quantize(w, forward, bits) if q else w
                                            for w, q in zip(leaves, flags)])

    def tx_init(latent):
        _, leaves, flags = split(latent["weights"])
        return MetaQuantState(
            count=jnp.zeros([], jnp.int32),
            base_q=optimizer.init([w for w, q in zip(leaves, flags) if q]),
            base_fp=optimizer.init([w for w, q in zip(leaves, flags) if not q]),
            meta=meta_opt.init(latent["meta"]))

    def tx_update(grads, state, params=None):
        if params is None:
            raise ValueError("metaquant's tx needs the latent: call tx.update(grads, state, latent).")
        treedef, leaves, flags = split(params["weights"])
        g_leaves = jax.tree.leaves(grads["weights"])
        first = state.count == 0
        keep = lambda old, new: jax.tree.map(lambda a, b: jnp.where(first, a, b), old, new)  # noqa: E731
        qw = [w for w, q in zip(leaves, flags) if q]
        qg = [g for g, q in zip(g_leaves, flags) if q]
        phi = params["meta"]

        # The meta output of this step's forward, and the LSTM state it leaves.
        cur = [meta_of(phi, mem) for mem in params["memory"]]
        w_fwd = [w + mem["update"] for w, mem in zip(qw, params["memory"])]

        if variant == "paper":
            new_w = w_fwd
            base_q = state.base_q
        else:  # released: commit the refinement of this step's c ⊙ M (one step behind the forward)
            cm = [calibration(w, forward) * m for w, (m, _) in zip(qw, cur)]
            u, base_q = optimizer.update(cm, state.base_q, qw)
            base_q = keep(state.base_q, base_q)
            u = keep([jnp.zeros_like(w) for w in qw], u)
            new_w = [w + du for w, du in zip(qw, u)]

        memory = []
        for i, (w, mem) in enumerate(zip(w_fwd, params["memory"])):
            new = dict(grad=qg[i], update=mem["update"])
            if wants_pre:
                new["pre"] = pre_quantize(w, forward)
            if wants_lstm:
                new["h"], new["c"] = keep((mem["h"], mem["c"]), cur[i][1])
            memory.append(new)
        if variant == "released":
            for new, du in zip(memory, u):
                new["update"] = du

        meta_u, meta_state = meta_opt.update(grads["meta"], state.meta, phi)
        meta_u = keep(jax.tree.map(jnp.zeros_like, meta_u), meta_u)
        meta_state = keep(state.meta, meta_state)
        new_phi = optax.apply_updates(phi, meta_u)

        if variant == "paper":  # precompute u_{t+1} = base_optimizer(c(W_{t+1}) ⊙ M_{t+1})
            cm = [calibration(w, forward) * meta_of(new_phi, mem)[0]
                  for w, mem in zip(new_w, memory)]
            u, base_q = optimizer.update(cm, state.base_q, new_w)
            for new, du in zip(memory, u):
                new["update"] = du

        fp_g = [g for g, q in zip(g_leaves, flags) if not q]
        fp_w = [w for w, q in zip(leaves, flags) if not q]
        fp_u, base_fp = optimizer.update(fp_g, state.base_fp, fp_w)

        q_it, fp_it = iter(new_w), iter(fp_u)
        w_updates = [next(q_it) - w if q else next(fp_it) for w, q in zip(leaves, flags)]
        updates = dict(
            weights=jax.tree.unflatten(treedef, w_updates), meta=meta_u,
            memory=jax.tree.map(jnp.subtract, memory, params["memory"]))
        return updates, MetaQuantState(optax.safe_increment(state.count), base_q, base_fp,
                                       meta_state)

    return Method(init=checks.float_params(init), forward=forward_fn, project=project,
                  tx=optax.GradientTransformation(tx_init, tx_update))


def from_config(name: str, ctx: Context) -> Method:
    """Build `metaquant` from `ctx.config.method` (keys and defaults: `DEFAULTS`)."""
    kw = method_options("metaquant", name, ctx, DEFAULTS)
    return metaquant(ctx.optimizer, ctx.learning_rate, mask=ctx.mask,
                     seed=int(ctx.config.get("seed", 0)), **kw)
