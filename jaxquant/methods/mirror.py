"""Mirror descent (Ajanthan et al., AISTATS'21) and proximal mean-field (Ajanthan et al., ICCV'19).

Binary {-1, +1} and ternary {-1, 0, +1} networks trained through a continuous
relaxation whose sharpness beta_t is annealed (METHODS.md §1):

  method        latent               forward weight               update               rounding
  md_tanh       x in (-1, 1)         x                            tanh(atanh x + b s)  sign(x)
  md_softmax    u on the d-simplex   sum_l u_l q_l                norm(u exp(b s))     argmax u
  md_tanh_s     y in R               tanh(b y), identity bwd      optimizer on y       sign(y)
  md_softmax_s  ut in R^d            sum softmax(b ut)_l q_l, id  optimizer on ut      argmax ut
  gd_tanh       y in R               tanh(b y), true chain rule   optimizer on y       sign(y)
  pmf           ut in R^d            sum softmax(b ut)_l q_l      g_ut = b g (I - uu^T) argmax ut

b = beta_t; s = the step the preceding optimizer proposes (e.g. -lr * the Adam
direction of dL/dx or dL/du); simplex latents carry a leading axis of size d (the
number of levels q_l): shape (d, *w.shape), each level one contiguous array (a
trailing axis of size 2 makes every level slice a strided gather). So
`optax.chain(optax.adam(lr), mirror_step("tanh", beta))` is MD-tanh.
The "-S" forms are the numerically stable equivalents of MD: with a constant
beta and equivalent initial points (x0 = tanh(beta y0), u0 = softmax(beta ut0))
md_tanh / md_tanh_s and md_softmax / md_softmax_s follow the same trajectory,
for any elementwise optimizer. beta_t = bts^ceil(t / bti), beta_0 = 1, capped
(`beta_schedule`).

Ternary: tanh-S uses the shifted tanh x = 1/2 [tanh(beta (y + 1/2)) + tanh(beta (y - 1/2))]
rounded -1 / 0 / +1 at y <= -1/2 / in between / y >= 1/2 (its beta -> inf limit);
the simplex methods use a 3-way simplex over q = (-1, 0, 1). md_tanh is binary
only: the shifted tanh has no closed-form inverse to take the mirror step through
(md_tanh_s is its equivalent form and does ternary).

Initialisation from the full-precision params w0 (md-bnn, pmf): MD-tanh x0 =
tanh(w0); MD-tanh-S / GD-tanh y0 = w0; the simplex methods need d logits per
weight. The official code draws each of them independently (xavier-uniform on a
d-times wider layer, normal(0, 0.1) for 1-D tensors): `logit_init='random'`,
the default, draws them i.i.d. uniform(-b, b), b = max|w0| per >= 2-D tensor
(the bound of w0's own xavier init), normal(0, std(w0)) for 1-D tensors, from
`seed`. `logit_init='levels'` sets ut0 = w0 q (deterministic, keeps a
warm-started network: binary softmax at beta = 1 then gives tanh(w0) exactly,
and binary md_softmax_s reproduces md_tanh_s). MD-softmax u0 = softmax(ut0).

Notebook use, on any params pytree::

    beta = jq.beta_schedule(1.02, 200, 1e35)
    method = jq.md_tanh_s(optax.adam(1e-3), beta)         # or md_tanh, pmf, ...
    latent = method.init(params); opt_state = method.tx.init(latent)
    grads = jax.grad(lambda l: loss(method.forward(l, step)))(latent) ...
    evaluate on method.project(latent)            # hard levels, params' shapes
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.methods import checks
from jaxquant.methods.base import (Context, MaskLike, Method, as_mask_fn, masked_map,
                                   method_options, scheduled_step)

Params = Any
Array = jax.Array

MIRROR_MAPS = ("tanh", "softmax")
LOGIT_INITS = ("random", "levels")

# Every config.method key each method reads, with the paper's default
# (METHODS.md §1: the CIFAR-10 ResNet-18 row; gd_tanh as md_tanh_s).
_MD_CAP, _PMF_CAP = 1e35, 1e4
DEFAULTS = {
    "md_tanh": dict(levels=2, bts=1.01, bti=100, beta_max=_MD_CAP),
    "md_softmax": dict(levels=2, bts=1.02, bti=200, beta_max=_MD_CAP, logit_init="random"),
    "md_tanh_s": dict(levels=2, bts=1.02, bti=200, beta_max=_MD_CAP),
    "md_softmax_s": dict(levels=2, bts=1.02, bti=200, beta_max=_MD_CAP, logit_init="random"),
    "pmf": dict(levels=2, bts=1.1, bti=1000, beta_max=_PMF_CAP, logit_init="random"),
    "gd_tanh": dict(levels=2, bts=1.02, bti=200, beta_max=_MD_CAP),
}


# ----------------------------------------------------------------------------- schedule

def beta_schedule(bts: float, bti: int, cap: float) -> optax.Schedule:
    """Annealing beta_t = min(bts^ceil(t / bti), cap); beta_0 = 1.

    t counts the optimizer steps taken so far (md-bnn / pmf multiply beta by bts
    after steps 0, bti, 2 bti, ...). MD caps at 1e35, PMF at 1e4. Returns a
    float32 scalar for an integer step.
    """
    if not bts > 0:
        raise ValueError(f"beta_schedule: bts must be > 0 (config.method.bts), got {bts!r}.")
    if int(bti) != bti or bti < 1:
        raise ValueError(f"beta_schedule: bti must be an integer >= 1 (config.method.bti), got {bti!r}.")
    if not cap > 0:
        raise ValueError(f"beta_schedule: cap must be > 0 (config.method.beta_max), got {cap!r}.")
    bti = int(bti)

    def schedule(count):
        count = jnp.asarray(count, jnp.int32)
        k = (jnp.maximum(count, 0) + bti - 1) // bti  # ceil(t / bti) for t >= 0
        return jnp.minimum(jnp.power(jnp.float32(bts), k.astype(jnp.float32)), jnp.float32(cap))

    return schedule


def _beta_at(beta: optax.ScalarOrSchedule, step) -> Array:
    return jnp.asarray(beta(step) if callable(beta) else beta, jnp.float32)


# ----------------------------------------------------------------------------- mirror step

def _limit(x: Array) -> Array:
    """x with infinities replaced by a large finite value (keeps beta * u summable)."""
    big = jnp.finfo(x.dtype).max / 4
    return jnp.clip(x, -big, big)


def tanh_dual_step(x: Array, u: Array, beta: Array) -> Array:
    """One MD-tanh step in atanh space: tanh(atanh(clip(x, -1 + eps, 1 - eps)) + beta u).

    eps is the dtype's machine epsilon, so |atanh| stays finite (about 8.3 in
    float32) and x = ±1 exactly never gives inf or NaN. Shapes: x, u any (same).
    """
    eps = jnp.finfo(x.dtype).eps
    z = jnp.arctanh(jnp.clip(x, -1 + eps, 1 - eps))
    return jnp.tanh(z + _limit(beta.astype(x.dtype) * u))


def softmax_dual_step(p: Array, u: Array, beta: Array) -> Array:
    """One MD-softmax step in log space: softmax(log max(p, tiny) + beta u) over the level axis.

    = normalize(p * exp(beta u)) without overflow; p on the simplex, shape (d, ...).
    """
    tiny = jnp.finfo(p.dtype).tiny
    z = jnp.log(jnp.maximum(p, tiny)) + _limit(beta.astype(p.dtype) * u)
    return jnp.stack(_level_softmax(z, jnp.ones((), p.dtype)))


def mirror_step(kind: str, beta: optax.ScalarOrSchedule = 1.0) -> optax.GradientTransformation:
    """Mirror-descent step after any optimizer (Ajanthan et al., AISTATS'21, eq. 6).

    x_{t+1} = (grad psi_beta)^{-1}(grad psi_beta(x_t) + beta_t u_t), u_t = the update
    proposed by the preceding transformations (e.g. -lr * Adam direction of dL/dx):
      'tanh':    x in (-1, 1), x <- tanh(atanh(x) + beta_t u)       (`tanh_dual_step`)
      'softmax': x on the simplex over the leading axis (size d, shape (d, ...)),
                 x <- normalize(x * exp(beta_t u))                   (`softmax_dual_step`)
    Use as `optax.chain(optax.adam(1e-3), mirror_step('tanh', beta_schedule(1.01, 100, 1e35)))`;
    restrict it to some leaves with `optax.masked`. Needs `params` in `update`.
    """
    checks.beta(beta, "mirror_step: beta")
    if kind not in MIRROR_MAPS:
        raise ValueError(f"mirror_step: unknown mirror map {kind!r}; valid: {', '.join(MIRROR_MAPS)}.")
    step_fn = tanh_dual_step if kind == "tanh" else softmax_dual_step
    return scheduled_step("mirror_step", step_fn, beta)


# ----------------------------------------------------------------------------- maps

def level_values(d: int) -> Array:
    """The d unscaled quantization levels q: symmetric integers, 0 dropped for even d.

    d = 2: (-1, 1); d = 3: (-1, 0, 1); d = 4: (-2, -1, 1, 2) (pmf's Q_l).
    """
    d = checks.levels(d)
    q = list(range(-(d // 2), d // 2 + 1))
    if d % 2 == 0:
        q.remove(0)
    return jnp.asarray(q, jnp.float32)


def _check_tanh_levels(n: int, name: str) -> int:
    if n not in (2, 3):
        raise ValueError(f"{name} supports levels 2 (binary) or 3 (ternary, shifted tanh); "
                         f"got config.method.levels={n!r}.")
    return int(n)


def tanh_map(y: Array, beta: Array, n_levels: int = 2) -> Array:
    """Binary tanh(beta y), or ternary 1/2 [tanh(beta (y + 1/2)) + tanh(beta (y - 1/2))]. Any shape."""
    b = beta.astype(y.dtype)
    if n_levels == 2:
        return jnp.tanh(b * y)
    return 0.5 * (jnp.tanh(b * (y + 0.5)) + jnp.tanh(b * (y - 0.5)))


def tanh_round(y: Array, n_levels: int = 2) -> Array:
    """beta -> inf limit of `tanh_map`: sign(y), or -1 / 0 / +1 at y <= -1/2 / between / >= 1/2."""
    return Q.sign(y) if n_levels == 2 else Q.ternary(y, 0.5)


def simplex_softmax(ut: Array, beta: Array) -> Array:
    """softmax(beta ut) over the level axis; ut - max(ut) first, so beta up to 1e35 cannot overflow."""
    return jnp.stack(_level_softmax(ut, beta))


@jax.custom_vjp
def pmf_softmax(ut: Array, beta: Array) -> Array:
    """u = softmax(beta ut) with PMF's approximate Jacobian (Ajanthan et al., ICCV'19, eq. 12).

    Backward: g_ut = beta g_u (I - u u^T), i.e. beta (g_u - <g_u, u> u) per weight (the
    true Jacobian has diag(u) in place of I); no gradient for beta. ut: (d, ...).
    """
    return simplex_softmax(ut, beta)


def _pmf_fwd(ut, beta):
    u = simplex_softmax(ut, beta)
    return u, (u, beta)


def _pmf_bwd(res, g):
    u, beta = res
    g_ut = beta.astype(u.dtype) * (g - functools.reduce(jnp.add, _levels_of(g * u))[None] * u)
    return g_ut, jnp.zeros_like(beta)


pmf_softmax.defvjp(_pmf_fwd, _pmf_bwd)


def _levels_of(x: Array) -> list[Array]:
    """The d level slices x[l] (d is small and static), each contiguous. Working on them
    elementwise, not reducing over a small axis, is several times faster on CPU."""
    return [x[i] for i in range(x.shape[0])]


def _per_level(q: Array, g: Array) -> Array:
    """(d, *g.shape): q_l g for every level l (one broadcast product)."""
    return q.reshape((-1,) + (1,) * g.ndim) * g[None]


def _level_softmax(z: Array, beta: Array) -> list[Array]:
    """[u_l] = softmax(beta z) over the level axis, one array per level: z - max(z) before
    the scaling (beta up to 1e35 cannot overflow), no (d, ...) array built and sliced again."""
    parts = _levels_of(z)
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, parts))
    b = beta.astype(z.dtype)
    e = [jnp.exp(b * (p - top)) for p in parts]
    inv = 1.0 / functools.reduce(jnp.add, e)
    return [x * inv for x in e]


def _weighted(parts: list[Array], q: Array) -> Array:
    """sum_l q_l parts[l]."""
    return functools.reduce(jnp.add, [p * q[i] for i, p in enumerate(parts)])


@jax.custom_vjp
def expected_weight(u: Array, q: Array) -> Array:
    """sum_l u_l q_l: (d, ...) simplex points -> (...) weights; backward g_u = q g."""
    return _weighted(_levels_of(u), q.astype(u.dtype))


def _expected_fwd(u, q):
    return expected_weight(u, q), q.astype(u.dtype)


def _expected_bwd(q, g):
    # one broadcast product; autodiff of the level slices would pad each back to (d, ...)
    return _per_level(q, g), jnp.zeros_like(q)


expected_weight.defvjp(_expected_fwd, _expected_bwd)


def _soft_weight(ut: Array, beta: Array, q: Array) -> tuple[Array, list[Array]]:
    """(sum_l q_l u_l, [u_l]) for u = softmax(beta ut) over the level axis, level by level."""
    u = _level_softmax(ut, beta)
    return _weighted(u, q), u


@jax.custom_vjp
def softmax_weight_st(ut: Array, beta: Array, q: Array) -> Array:
    """MD-softmax-S's weight sum_l q_l softmax(beta ut)_l with identity backward through the
    softmax: g_ut = q g (the straight-through `expected_weight(softmax(beta ut), q)`, fused)."""
    return _soft_weight(ut, beta, q.astype(ut.dtype))[0]


def _st_fwd(ut, beta, q):
    return softmax_weight_st(ut, beta, q), (beta, q.astype(ut.dtype))


def _st_bwd(res, g):
    beta, q = res
    return _per_level(q, g), jnp.zeros_like(beta), jnp.zeros_like(q)


softmax_weight_st.defvjp(_st_fwd, _st_bwd)


@jax.custom_vjp
def pmf_weight(ut: Array, beta: Array, q: Array) -> Array:
    """PMF's weight sum_l q_l softmax(beta ut)_l with the approximate Jacobian of `pmf_softmax`:
    g_u = q g, so g_ut_l = beta g (q_l - w u_l), w the weight (`expected_weight(pmf_softmax)`, fused)."""
    return _soft_weight(ut, beta, q.astype(ut.dtype))[0]


def _pmf_weight_fwd(ut, beta, q):
    q = q.astype(ut.dtype)
    w, u = _soft_weight(ut, beta, q)
    return w, (w, u, beta, q)


def _pmf_weight_bwd(res, g):
    w, u, beta, q = res
    bg = beta.astype(g.dtype) * g
    return (jnp.stack([bg * (q[i] - w * ul) for i, ul in enumerate(u)]),
            jnp.zeros_like(beta), jnp.zeros_like(q))


pmf_weight.defvjp(_pmf_weight_fwd, _pmf_weight_bwd)


def argmax_level(u: Array, q: Array) -> Array:
    """q[argmax_l u_l]: (d, ...) -> (...) hard levels."""
    return q.astype(u.dtype)[jnp.argmax(u, axis=0)]


def initial_logits(params: Params, n_levels: int, logit_init: str = "random",
                   seed: int = 0) -> Params:
    """d logits per weight from full-precision params: leaf shape s -> (d,) + s.

    'random' (md-bnn / pmf): i.i.d. uniform(-max|w0|, max|w0|) for >= 2-D leaves,
    normal(0, std(w0)) for 1-D ones, keyed by `seed` and the leaf index.
    'levels': ut0[l] = w0 q_l.
    """
    q = level_values(n_levels)
    if logit_init == "levels":
        return jax.tree.map(lambda w: _per_level(q.astype(w.dtype), w), params)
    if logit_init != "random":
        raise ValueError(f"unknown logit_init {logit_init!r} (config.method.logit_init); "
                         f"valid: {', '.join(LOGIT_INITS)}.")
    leaves, treedef = jax.tree.flatten(params)
    key = jax.random.PRNGKey(seed)
    out = []
    for i, w in enumerate(leaves):
        k = jax.random.fold_in(key, i)
        shape = (q.shape[0], *w.shape)
        if w.ndim >= 2:
            b = jnp.max(jnp.abs(w))
            out.append(jax.random.uniform(k, shape, w.dtype, -1.0, 1.0) * b)
        else:
            out.append(jax.random.normal(k, shape, w.dtype) * jnp.std(w))
    return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------------- methods

def _method(init_leaf: Callable[[Params], Params] | None, forward_leaf, project_leaf,
            tx: optax.GradientTransformation, mask: MaskLike,
            init_tree: Callable[[Params], Params] | None = None) -> Method:
    """A Method whose init / forward / project act leafwise on the masked leaves only.

    Unmasked leaves keep the full-precision weight as latent, identity forward and
    project, and the same optimizer. `init_tree` (the whole masked tree at once)
    replaces `init_leaf` where the init needs more than one leaf (random logits).
    """
    mask_fn = as_mask_fn(mask)

    def init(params):
        m = mask_fn(params)
        if init_tree is None:
            return masked_map(init_leaf, m, params)
        new = init_tree(params)
        return jax.tree.map(lambda keep, a, b: a if keep else b, m, new, params)

    def forward(latent, step):
        return masked_map(lambda x: forward_leaf(x, step), mask_fn(latent), latent)

    return Method(init=checks.float_params(init), forward=forward,
                  project=lambda latent: masked_map(project_leaf, mask_fn(latent), latent), tx=tx)


def _mirror_tx(optimizer, kind, beta, mask: MaskLike) -> optax.GradientTransformation:
    return optax.chain(optimizer, optax.masked(mirror_step(kind, beta), as_mask_fn(mask)))


def md_tanh(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
            mask: MaskLike = None, levels: int = 2) -> Method:
    """MD-tanh (AISTATS'21): latent x0 = tanh(w0), forward x, x <- tanh(atanh(x) + beta_t u), round sign(x).

    u = the optimizer's update from dL/dx; the step runs in atanh space with
    clipping (`tanh_dual_step`). Binary only.
    """
    if levels != 2:
        raise ValueError(f"md_tanh is binary only (use md_tanh_s or md_softmax for ternary); "
                         f"got config.method.levels={levels!r}.")
    return _method(jnp.tanh, lambda x, step: x, Q.sign, _mirror_tx(optimizer, "tanh", beta, mask), mask)


def md_tanh_s(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
              mask: MaskLike = None, levels: int = 2) -> Method:
    """MD-tanh-S (AISTATS'21): latent y0 = w0, forward tanh(beta_t y) with identity backward
    (dL/dy := dL/dx, no Jacobian), the optimizer on y, round sign(y).

    Ternary (levels=3): the shifted tanh of `tanh_map`, rounding `tanh_round`. Caveat
    (measured on digits): with non-affine BN the net is scale invariant, so latents
    started inside (-1/2, 1/2) (xavier w0) may never leave the zero band; the soft net
    then trains while every rounded weight is 0. PMF / md_softmax_s ternary do not
    have this problem.
    """
    checks.beta(beta)
    n = _check_tanh_levels(levels, "md_tanh_s")

    def forward(y, step):
        b = _beta_at(beta, step)
        return Q.straight_through(lambda v: tanh_map(v, b, n))(y)

    return _method(lambda w: w, forward, lambda y: tanh_round(y, n), optimizer, mask)


def gd_tanh(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
            mask: MaskLike = None, levels: int = 2) -> Method:
    """GD-tanh baseline (AISTATS'21): as `md_tanh_s` with the true chain rule
    dL/dy = beta (1 - tanh^2(beta y)) dL/dx (ternary: through the shifted tanh).
    """
    checks.beta(beta)
    n = _check_tanh_levels(levels, "gd_tanh")
    return _method(lambda w: w, lambda y, step: tanh_map(y, _beta_at(beta, step), n),
                   lambda y: tanh_round(y, n), optimizer, mask)


def _simplex_init(n_levels, logit_init, seed, then=None):
    if logit_init not in LOGIT_INITS:
        raise ValueError(f"unknown logit_init {logit_init!r} (config.method.logit_init); "
                         f"valid: {', '.join(LOGIT_INITS)}.")
    level_values(n_levels)  # validates now, not at init time

    def init_tree(params):
        logits = initial_logits(params, n_levels, logit_init, seed)
        return logits if then is None else jax.tree.map(then, logits)
    return init_tree


def md_softmax(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
               mask: MaskLike = None, levels: int = 2, logit_init: str = "random",
               seed: int = 0) -> Method:
    """MD-softmax (AISTATS'21): latent u0 = softmax(ut0) on the d-simplex (shape (d, ...)),
    forward sum_l u_l q_l, u <- normalize(u exp(beta_t s)) in log space (s = the optimizer's
    step from dL/du), round q[argmax u].
    """
    q = level_values(levels)
    return _method(None, lambda u, step: expected_weight(u, q), lambda u: argmax_level(u, q),
                   _mirror_tx(optimizer, "softmax", beta, mask), mask,
                   init_tree=_simplex_init(levels, logit_init, seed,
                                           then=lambda z: jax.nn.softmax(z, axis=0)))


def md_softmax_s(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
                 mask: MaskLike = None, levels: int = 2, logit_init: str = "random",
                 seed: int = 0) -> Method:
    """MD-softmax-S (AISTATS'21): logits ut (d, ...), forward sum_l softmax(beta_t ut)_l q_l with
    identity backward through the softmax (dL/dut := dL/du = q dL/dx), round q[argmax ut].
    """
    checks.beta(beta)
    q = level_values(levels)

    def forward(ut, step):  # = expected_weight(Q.straight_through(simplex_softmax)(ut), q)
        return softmax_weight_st(ut, _beta_at(beta, step), q)

    return _method(None, forward, lambda ut: argmax_level(ut, q), optimizer, mask,
                   init_tree=_simplex_init(levels, logit_init, seed))


def pmf(optimizer: optax.GradientTransformation, beta: optax.ScalarOrSchedule, *,
        mask: MaskLike = None, levels: int = 2, logit_init: str = "random",
        seed: int = 0) -> Method:
    """Proximal mean-field (ICCV'19): logits ut (d, ...), forward sum_l softmax(beta_t ut)_l q_l,
    backward g_ut = beta g_u (I - u u^T) (`pmf_softmax`), round q[argmax ut].
    """
    checks.beta(beta)
    q = level_values(levels)

    def forward(ut, step):  # = expected_weight(pmf_softmax(ut, beta_t), q)
        return pmf_weight(ut, _beta_at(beta, step), q)

    return _method(None, forward, lambda ut: argmax_level(ut, q), optimizer, mask,
                   init_tree=_simplex_init(levels, logit_init, seed))


_FACTORIES = dict(md_tanh=md_tanh, md_softmax=md_softmax, md_tanh_s=md_tanh_s,
                  md_softmax_s=md_softmax_s, pmf=pmf, gd_tanh=gd_tanh)


def from_config(name: str, ctx: Context) -> Method:
    """Build `name` (a key of DEFAULTS) from `ctx.config.method`, reading only its DEFAULTS keys."""
    opts = method_options("mirror", name, ctx, DEFAULTS)
    try:
        beta = beta_schedule(float(opts.pop("bts")), opts.pop("bti"), float(opts.pop("beta_max")))
        kwargs = dict(mask=ctx.mask, levels=opts.pop("levels"))
        if "logit_init" in opts:
            kwargs.update(logit_init=opts.pop("logit_init"), seed=int(ctx.config.get("seed", 0)))
        return _FACTORIES[name](ctx.optimizer, beta, **kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from e
