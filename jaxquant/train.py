"""The trainer: one jitted step for every method, evaluation of the hard-quantized
network, checkpoint/resume, metrics (DESIGN.md).

The trainer never looks at the method's name: everything that differs between
methods comes through the `Method` fields (init / forward / project / tx /
loss). Evaluation always runs `method.project(latent)`.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxquant import checkpoints, data, methods, models, parallel, workdir as workdir_lib
from jaxquant.config_check import validate
from jaxquant.errors import ConfigError, UserError
from jaxquant.data import augment as augment_lib
from jaxquant.masks import (METHOD_STATE, full_precision_layers, layer_excludes, param_paths,
                            quant_mask)
from jaxquant.methods.base import Context, Method, default_loss
from jaxquant.metrics import MetricsWriter, plot_curves
from jaxquant.optim import make_optimizer, make_schedule


class Experiment(NamedTuple):
    """Everything a run builds from its config before training."""
    config: Any
    dataset: Any
    model: Any
    method: Method
    mesh: Any
    learning_rate: optax.Schedule
    steps_per_epoch: int
    total_steps: int
    params: Any          # initial (or warm-started) full-precision params
    batch_stats: Any
    mask: Any


class Preempted(Exception):
    """Raised internally when SIGTERM/SIGINT asks the run to stop."""


class NonFiniteError(UserError):
    """The loss, gradients or updated state became NaN/inf (config.train.on_nonfinite='stop')."""


WorkdirError = workdir_lib.WorkdirError


def _normalize(images, ds):
    if not ds.mean:  # integer tokens (text): no normalisation
        return jnp.asarray(images)
    return augment_lib.normalize(images, ds.mean, ds.std)


def build_experiment(config, timing: dict | None = None) -> Experiment:
    """Data, model, method and schedules for `config` (no training); the seconds spent
    loading the data are added to timing['data_s'] if `timing` is given."""
    validate(config)
    loading = time.perf_counter()
    ds = data.load(config.dataset)
    if timing is not None:
        timing["data_s"] += time.perf_counter() - loading
    fp_layers = full_precision_layers(config.quant.full_precision_layers)
    model = models.build(config.model, ds.num_classes, fp_layers)
    mesh = parallel.make_mesh()
    batch = int(config.train.batch_size)
    parallel.check_batch(batch, mesh)
    n_train = len(ds.train.labels) if ds.train.in_memory else len(ds.train)
    if batch > n_train:
        held_out = config.dataset.validation
        carved = f" after config.dataset.validation={held_out}" if held_out else ""
        raise ConfigError(
            f"config.train.batch_size={batch} is larger than the training set of "
            f"{config.dataset.name!r} ({n_train} examples{carved}); use a batch size of at "
            f"most {n_train}.")
    steps_per_epoch = max(n_train // batch, 1)
    total_steps = int(config.train.steps) or int(config.train.epochs) * steps_per_epoch

    key = jax.random.PRNGKey(config.seed)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, *ds.image_shape)), train=False))(key)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    if config.init_checkpoint:
        params, batch_stats = _warm_start(config.init_checkpoint, params, batch_stats)

    exclude = list(config.quant.exclude) + layer_excludes(
        full_precision_layers(fp_layers, params))  # checks the names against the params
    mask = quant_mask(params, list(config.quant.include), exclude)
    mask_fn = lambda p: quant_mask(p, list(config.quant.include), exclude, strict=False)  # noqa: E731
    lr = make_schedule(config.schedule, float(config.optimizer.lr), steps_per_epoch, total_steps)
    ctx = Context(config=config, optimizer=make_optimizer(config.optimizer, lr), learning_rate=lr,
                  mask=mask_fn, steps_per_epoch=steps_per_epoch)
    method = methods.build(config.method.name, ctx)
    return Experiment(config, ds, model, method, mesh, lr, steps_per_epoch, total_steps,
                      params, batch_stats, mask)


def _warm_start(path, params, batch_stats):
    """Params and BN stats of another run, checked against this model's structure."""
    loaded, loaded_bs, _ = checkpoints.load_weights(path)
    for name, want, got in (("params", params, loaded), ("batch_stats", batch_stats, loaded_bs)):
        want_s = jax.tree.map(jnp.shape, want)
        got_s = jax.tree.map(jnp.shape, got)
        if want_s != got_s:
            raise checkpoints.CheckpointError(
                f"config.init_checkpoint={path!r} holds {name} of another model "
                f"(structure or shapes differ from config.model); warm-start from a run of the "
                f"same model.")
    return jax.tree.map(jnp.asarray, loaded), jax.tree.map(jnp.asarray, loaded_bs)


def init_state(exp: Experiment) -> dict:
    """The train state at step 0: {'step', 'latent', 'opt_state', 'batch_stats', 'rng'}."""
    latent = exp.method.init(exp.params)
    return dict(step=jnp.zeros([], jnp.int32), latent=latent, opt_state=exp.method.tx.init(latent),
                batch_stats=exp.batch_stats, rng=jax.random.PRNGKey(exp.config.seed + 1))


def _nonfinite_leaves(tree):
    """bool[#leaves]: which leaves of `tree` hold a NaN or inf."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.stack([~jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves else jnp.zeros(0, bool)


def _checked_state(state):
    """The parts of a train state whose non-finite values stop a run (named in reports).

    Not the optimizer state: a transform may keep an inf on purpose (a running minimum)."""
    return dict(latent=state["latent"], batch_stats=state["batch_stats"])


def _float_paths(tree) -> list[str]:
    """'/'-joined paths of the float leaves of `tree` (the order of `_nonfinite_leaves`)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [p for p, (_, x) in zip(param_paths(tree), flat) if jnp.issubdtype(x.dtype, jnp.inexact)]


def make_train_step(exp: Experiment):
    """state, images (uint8), labels -> new state, metrics; the whole update in one function."""
    method, model, ds = exp.method, exp.model, exp.dataset
    loss_fn = method.loss or default_loss

    def step_fn(state, images, labels):
        step = state["step"]
        key = jax.random.fold_in(state["rng"], step)
        x = _normalize(augment_lib.augment(key, images, ds.augment), ds)

        def objective(latent):
            return loss_fn(method, model.apply, latent, state["batch_stats"], x, labels, step)

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state["latent"])
        updates, opt_state = method.tx.update(grads, state["opt_state"], state["latent"])
        latent = optax.apply_updates(state["latent"], updates)
        new = dict(step=step + 1, latent=latent, opt_state=opt_state,
                   batch_stats=aux.batch_stats, rng=state["rng"])
        # A step with a non-finite loss, gradient or new state (latents can overflow
        # while the gradients are finite, e.g. with a huge lr) is never applied: the
        # state stays the last good one, and the host decides to stop or go on.
        bad_grads = _nonfinite_leaves(grads)
        bad_state = _nonfinite_leaves(_checked_state(new))
        finite = jnp.isfinite(loss) & ~jnp.any(bad_grads) & ~jnp.any(bad_state)
        # one cond, not a where per leaf: XLA:CPU fused the whole finiteness check into
        # every leaf's select (#leaves^2 instructions; ResNet-20 compiled 5x longer)
        new = jax.lax.cond(finite, lambda: new, lambda: dict(state, step=step + 1))
        metrics = dict(train_loss=loss,
                       train_accuracy=jnp.mean(jnp.argmax(aux.logits, -1) == labels),
                       lr=exp.learning_rate(step), nonfinite_grads=bad_grads,
                       nonfinite_state=bad_state, finite=finite, **dict(aux.metrics))
        return new, metrics

    return step_fn


_FLAGS = ("nonfinite_grads", "nonfinite_state", "finite")


def make_update(exp: Experiment):
    """state, metric sums, images, labels -> new state, new sums: one train step whose
    metrics are added to running sums on the device (no per-step host transfer).

    The sums (`empty_metric_sums`) hold each scalar metric summed over the steps since
    the last log, the number of those steps and of the skipped (non-finite) ones, and
    the step number, loss and non-finite leaves of the first skipped step.
    """
    step_fn = make_train_step(exp)

    def update(state, sums, images, labels):
        step = state["step"]
        state, m = step_fn(state, images, labels)
        bad = ~m["finite"]
        first = (sums["bad"] == 0) & bad
        pick = lambda new, old: jnp.where(first, new, old)  # noqa: E731
        return state, dict(
            sums={k: v + jnp.mean(m[k]).astype(jnp.float32) for k, v in sums["sums"].items()},
            steps=sums["steps"] + 1, bad=sums["bad"] + bad.astype(jnp.int32),
            first_bad=pick(step + 1, sums["first_bad"]),
            bad_loss=pick(m["train_loss"].astype(jnp.float32), sums["bad_loss"]),
            bad_grads=pick(m["nonfinite_grads"], sums["bad_grads"]),
            bad_state=pick(m["nonfinite_state"], sums["bad_state"]))

    return update


def _label_shape(split) -> tuple:
    """The shape of one example's label: () for classes, (T,) for next-byte targets."""
    return tuple(split.labels.shape[1:]) if split.in_memory else ()


def empty_metric_sums(exp: Experiment, state) -> dict:
    """Zero metric sums (host arrays) in the structure `make_update` carries."""
    batch = int(exp.config.train.batch_size)
    shapes = jax.eval_shape(make_train_step(exp), state,
                            jax.ShapeDtypeStruct((batch, *exp.dataset.image_shape), jnp.uint8),
                            jax.ShapeDtypeStruct((batch, *_label_shape(exp.dataset.train)),
                                                 jnp.int32))[1]
    zero = lambda dtype, shape=(): np.zeros(shape, dtype)  # noqa: E731
    return dict(sums={k: zero(np.float32) for k in shapes if k not in _FLAGS},
                steps=zero(np.int32), bad=zero(np.int32), first_bad=zero(np.int32),
                bad_loss=zero(np.float32), bad_grads=zero(bool, shapes["nonfinite_grads"].shape),
                bad_state=zero(bool, shapes["nonfinite_state"].shape))


def make_eval_fn(exp: Experiment):
    """weights, batch_stats, images, labels, valid -> (#correct, summed loss)."""
    model, ds = exp.model, exp.dataset

    @jax.jit
    def eval_batch(params, batch_stats, images, labels, valid):
        logits = model.apply({"params": params, "batch_stats": batch_stats},
                             _normalize(images, ds), train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        valid = valid.reshape(valid.shape + (1,) * (labels.ndim - 1))  # sequence labels (B, T)
        correct = (jnp.argmax(logits, -1) == labels) & valid
        return jnp.sum(correct), jnp.sum(jnp.where(valid, loss, 0.0))

    return eval_batch


def _fixed_batches(exp: Experiment, split):
    """(images, labels, valid) of `split` in order, in global batches of the eval batch size
    (the last one zero-padded, `valid` False on the padding)."""
    n = len(split.labels) if split.in_memory else len(split)
    size = int(exp.config.train.eval_batch_size)
    size -= size % exp.mesh.devices.size
    size = max(size, exp.mesh.devices.size)
    sharding = parallel.batch_sharded(exp.mesh)
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        if split.in_memory:
            images, labels = split.images[idx], split.labels[idx]
        else:
            images, labels = split.get_batch(idx)
        pad = size - len(idx)
        valid = np.arange(size) < len(idx)
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
        yield parallel.to_global((images, labels, valid), sharding)


def evaluate(exp: Experiment, eval_batch, params, batch_stats, split, batches=None) -> dict:
    """Accuracy and mean loss of (params, batch_stats) on a split, in fixed-size batches
    (per example; per position for sequence labels (N, T), e.g. next-byte targets).

    `batches`: the split's `_fixed_batches` already on the device (`eval_batches`), or
    None to load them. The counts are summed on the device and read once."""
    n = len(split.labels) if split.in_memory else len(split)
    total, per_example = (0, 0.0), 1
    for images, labels, valid in (_fixed_batches(exp, split) if batches is None else batches):
        c, lsum = eval_batch(params, batch_stats, images, labels, valid)
        total = (total[0] + c, total[1] + lsum)
        per_example = int(np.prod(labels.shape[1:]))
    correct, loss = jax.device_get(total)
    count = n * per_example
    return dict(accuracy=int(correct) / max(count, 1), loss=float(loss) / max(count, 1))


def eval_batches(exp: Experiment, split):
    """The evaluation batches of an in-memory split, placed on the device once for all
    evaluations of a run (None for streamed data: each evaluation loads them)."""
    return list(_fixed_batches(exp, split)) if split.in_memory else None


def make_split_mean(exp: Experiment, split):
    """(fn, latent, batch_stats) -> mean over the examples of `split` of
    fn(apply_fn, latent, batch_stats, images, labels) (per-example pytree, leading batch axis):
    the `mean_over_train` of `Method.epoch_end`. Each fn is jitted once."""
    n = len(split.labels) if split.in_memory else len(split)
    compiled = {}

    def mean(fn, latent, batch_stats):
        if fn not in compiled:
            def sums(latent, batch_stats, images, labels, valid):
                out = fn(exp.model.apply, latent, batch_stats, _normalize(images, exp.dataset), labels)
                return jax.tree.map(lambda v: jnp.sum(jnp.where(
                    valid.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0), axis=0), out)
            compiled[fn] = jax.jit(sums)
        total = None
        for images, labels, valid in _fixed_batches(exp, split):
            part = compiled[fn](latent, batch_stats, images, labels, valid)
            total = part if total is None else jax.tree.map(jnp.add, total, part)
        return jax.tree.map(lambda t: t / max(n, 1), total)

    return mean


class _Batches:
    """Training batches: an on-device gather for in-memory data, host loading otherwise,
    or on-device random sampling for a split that offers it.

    The order is a function of (seed, epoch) only, so a resumed run sees the
    same batches as an uninterrupted one. `compile(update)` gives the jitted
    train step on `get(step)`: in-memory data stays on the device and the step
    gathers its batch there (one call per step, no separate gather); streamed
    data comes as a host batch. A split with `sample_source` (an array) and
    `sample(key, batch, source)` (jittable -> images, labels), e.g. text's random
    contiguous windows, keeps `sample_source` on the device and draws every step's
    batch there with the key fold_in(PRNGKey(seed + 2), step) (a function of the step
    only, so resumed runs see the same batches).
    """

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.split = exp.dataset.train
        self.batch = int(exp.config.train.batch_size)
        self.key = jax.random.PRNGKey(exp.config.seed + 2)
        self.sharding = parallel.batch_sharded(exp.mesh)
        self._perm_epoch, self._perm = None, None
        self.sampled = getattr(self.split, "sample_source", None) is not None
        if self.sampled:
            self.source = parallel.to_global(np.asarray(self.split.sample_source),
                                             parallel.replicated(exp.mesh))
        elif self.split.in_memory:  # small data: every device holds all of it
            rep = parallel.replicated(exp.mesh)
            self.images, self.labels = parallel.to_global(
                (self.split.images, self.split.labels), rep)
            n = len(self.split.labels)
            self._permute = jax.jit(lambda k: jax.random.permutation(k, n), out_shardings=rep)
        else:
            n = len(self.split)
            self._permute = lambda k: np.asarray(jax.random.permutation(k, n))

    def _epoch_perm(self, epoch: int):
        if epoch != self._perm_epoch:
            self._perm = self._permute(jax.random.fold_in(self.key, epoch))
            self._perm_epoch = epoch
        return self._perm

    def get(self, step: int):
        """The data arguments of the step: (images, labels) of the batch for streamed
        data; (all images, all labels, epoch permutation, index of the step in its
        epoch) for in-memory data."""
        if self.sampled:  # the key is an argument, so seeds share one compiled step
            return self.source, self.key, np.int32(step)
        epoch, i = divmod(step, self.exp.steps_per_epoch)
        perm = self._epoch_perm(epoch)
        if self.split.in_memory:
            return self.images, self.labels, perm, np.int32(i)
        # Streaming data: each process decodes only the rows its devices hold.
        idx = perm[i * self.batch:(i + 1) * self.batch]
        rows = parallel.local_rows(self.sharding, self.batch)
        batch = self.split.get_batch(idx[rows], seed=(self.exp.config.seed, step))
        return parallel.from_process_local(batch, self.sharding, self.batch)

    def compile(self, update):
        """jit of (state, sums, *get(step)) -> `update(state, sums, images, labels)`
        (state and sums donated)."""
        if self.sampled:
            def sample(state, sums, source, key, step):
                x, y = self.split.sample(jax.random.fold_in(key, step), self.batch, source)
                x, y = (jax.lax.with_sharding_constraint(a, self.sharding) for a in (x, y))
                return update(state, sums, x, y)
            return jax.jit(sample, donate_argnums=(0, 1))
        if not self.split.in_memory:
            return jax.jit(update, donate_argnums=(0, 1))

        def run(state, sums, images, labels, perm, i):
            idx = jax.lax.dynamic_slice_in_dim(perm, i * self.batch, self.batch)
            # the barrier keeps XLA from fusing the gather into the augmentation and the
            # first layer (on XLA:CPU that fusion made ResNet-20 compile minutes and run
            # many times slower): the batch is gathered into its own buffer first
            x, y = jax.lax.optimization_barrier(tuple(
                jax.lax.with_sharding_constraint(a[idx], self.sharding) for a in (images, labels)))
            return update(state, sums, x, y)

        return jax.jit(run, donate_argnums=(0, 1))


def _check_finite(sums, paths, ckpt, policy, log):
    """Stop (policy 'stop') or report (policy 'skip') steps whose update was skipped.

    `sums` = host metric sums of `make_update`; `paths` = (gradient leaf names,
    train-state leaf names) in `_nonfinite_leaves` order.
    """
    if not int(sums["bad"]):
        return
    grads = [p for p, b in zip(paths[0], sums["bad_grads"]) if b]
    state = [p for p, b in zip(paths[1], sums["bad_state"]) if b]
    parts = [f"loss={float(sums['bad_loss'])}"]
    if grads:
        parts.append(f"gradient leaves {', '.join(grads[:10])}" + (" ..." if len(grads) > 10 else ""))
    if state:
        parts.append(f"updated state leaves {', '.join(state[:10])}" + (" ..." if len(state) > 10 else ""))
    where = (f"non-finite values at step {int(sums['first_bad'])} ({int(sums['bad'])} of the last "
             f"{int(sums['steps'])} steps): {'; '.join(parts)}")
    if policy == "skip":
        log(f"warning: {where}; those updates were skipped (config.train.on_nonfinite='skip').")
        return
    last = ckpt.latest_verified_step()  # only a step whose files match their checksums
    good = (f"the last good checkpoint is step {last} in {ckpt.directory}" if last is not None
            else "no verified checkpoint was saved yet")
    raise NonFiniteError(
        f"{where}. The update was not applied; {good}. Lower config.optimizer.lr (or check the "
        f"data for NaN/inf), or set config.train.on_nonfinite='skip' to skip such steps.")


def _restore_latest(ckpt, abstract, log):
    """(state, meta) of the newest readable checkpoint, falling back to older ones.

    Unreadable newer steps (a file that fails its checksum, truncated or missing
    files, another model's shapes) are named in a warning (step, file, short reason)
    and moved to `checkpoints_unreadable/`.
    """
    steps = sorted(ckpt.all_steps(), reverse=True)
    problems, bad = [], []
    for step in steps:
        try:
            out = ckpt.restore(step, abstract)
            out = out[0], workdir_lib.check_meta(out[1], step)
        except Exception as e:  # checksum, truncated / missing files, shapes: orbax raises many types
            problems.append(f"step {step} ({ckpt.step_dir(step)}): {checkpoints.describe_read_error(e)}")
            bad.append(step)
            log(f"warning: cannot read checkpoint {problems[-1]}")
            continue
        if not os.path.exists(os.path.join(ckpt.step_dir(step), checkpoints.CHECKSUMS)):
            log(f"warning: checkpoint step {step} has no {checkpoints.CHECKSUMS}; resumed unverified.")
        if bad:
            aside = ckpt.set_aside(bad, parallel.is_main_process())
            parallel.sync("unreadable checkpoints set aside")
            ckpt.reload()
            log(f"warning: resuming from the older checkpoint {os.path.join(ckpt.directory, str(step))}"
                f"; moved the unreadable step(s) {', '.join(map(str, bad))} to {aside}.")
        return out
    raise WorkdirError(
        "no readable checkpoint to resume from: " + "; ".join(problems) +
        ". The run's config.json matches this config, so the checkpoints are damaged (or were "
        "written by another version of jaxquant); to discard this run, pass --overwrite, or "
        "use another --workdir.")


def _progress(total: int, initial: int, images_per_step: int, log):
    """(bar, log) for the step loop: a progress bar on stderr when it is a terminal.

    The bar shows steps done / total, elapsed < ETA, images/s (steps/s x the global
    batch) and the last logged loss and accuracy; the returned `log` clears it,
    prints and redraws it, so that log lines do not land on the bar. When stderr is
    not a terminal (a file, a pipe, a batch job) the bar is off and `log` is returned
    unchanged: the output is the plain per-evaluation lines, without carriage returns.
    """
    from tqdm import tqdm

    class StepBar(tqdm):
        @property
        def format_dict(self):  # tqdm's documented way to add a field to bar_format
            d = super().format_dict
            rate = d["rate"] or ((d["n"] - d.get("initial", 0)) / d["elapsed"] if d["elapsed"] else 0)
            d["images_rate"] = f"{rate * images_per_step:,.0f} images/s" if rate else "? images/s"
            return d

    bar = StepBar(total=total, initial=initial, disable=not sys.stderr.isatty(), unit="step",
                  dynamic_ncols=True, leave=False,
                  bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps "
                             "[{elapsed}<{remaining}, {images_rate}{postfix}]")
    if bar.disable:
        return bar, log

    def log_above_bar(*args, **kwargs):
        with bar.external_write_mode():
            log(*args, **kwargs)
    return bar, log_above_bar


def _write_summary(workdir, params, mask) -> str:
    from jaxquant.export import summary_table
    table = summary_table(params, mask)
    with open(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(table + "\n")
    return table


def _sums_to_json(sums) -> dict:
    """Host metric sums (`empty_metric_sums` structure) as JSON (a checkpoint's meta)."""
    return jax.tree.map(lambda x: np.asarray(x).tolist(), sums)


def _sums_from_json(value, empty) -> dict:
    """The inverse of `_sums_to_json`, in the dtypes and shapes of `empty`; `empty` for
    None (a new run, or a checkpoint written before the sums were carried) or for a
    value of another structure."""
    if value is None:
        return empty
    try:
        out = jax.tree.map(lambda e, v: np.asarray(v, e.dtype).reshape(e.shape), empty, value)
    except (TypeError, ValueError):
        return empty
    return out


def _import_in_background(*modules: str) -> None:
    """Import `modules` in a daemon thread. An import holds the GIL, but XLA's compiler
    and the train steps release it, so the import overlaps them instead of adding to
    the run's end; a later `import` of the same module waits for it. A failure here is
    silent: the later import raises it."""
    import importlib
    import threading

    def run():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 -- the importing code reports it
                return
    threading.Thread(target=run, daemon=True, name="jaxquant-imports").start()


@contextlib.contextmanager
def _timed(timing: dict, key: str):
    """Adds the seconds the block takes to timing[key]."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timing[key] += time.perf_counter() - t


def _install_signal_handlers(flag: dict):
    def handler(signum, frame):
        del frame
        flag["signal"] = signum
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return previous


def train_and_evaluate(config, workdir: str, *, overwrite: bool = False,
                       stop_after_steps: int | None = None, log=print) -> dict:
    """Train `config` in `workdir` (resuming if it holds checkpoints) and return
    the final metrics: test accuracy of the hard-quantized network, best
    validation accuracy and the test accuracy at it, step, preempted flag and
    the signal that stopped the run (None if none did).

    SIGTERM/SIGINT end the current step, save a checkpoint and return with
    preempted=True; an unreadable newest checkpoint falls back to an older one;
    a non-finite loss, gradient or updated state stops with `NonFiniteError`
    (config.train.on_nonfinite='stop') or skips that step ('skip').

    The workdir follows `jaxquant.workdir`: checked before any data is loaded, locked
    for the run, replaced only if it is a run and `overwrite` is set, resumed only with
    a config of the same trajectory.

    `stop_after_steps` stops early as a preemption would (tests use it).

    result['timing'] holds the seconds spent in: setup_s (model and method), data_s
    (loading the data, training data to the device), compile_s (the train step),
    train_s (train steps, including the waits for queued steps), log_s (metrics to the
    host and files), eval_s (evaluations, their compilation included), checkpoint_s (the
    part of the saves the loop waits for; orbax writes the files in the background),
    final_s (curves and final evaluation), first_step_s (from the call to the end of the
    first train step) and total_s (the whole call).
    """
    main_process = parallel.is_main_process()
    if not main_process:
        log = lambda *_: None  # noqa: E731
    started = time.perf_counter()
    timing = collections.defaultdict(float)  # seconds spent per part of the run (result['timing'])
    validate(config)
    plan = workdir_lib.plan(workdir, config, overwrite=overwrite,  # refusals write nothing
                            main_process=main_process)
    with _timed(timing, "setup_s"):
        exp = build_experiment(config, timing)
    timing["setup_s"] -= timing["data_s"]  # setup_s: model and method; data_s: the data
    with workdir_lib.claimed(plan, main_process=main_process, log=log):
        parallel.sync("workdir claimed")  # before any process reads what process 0 wrote
        return _train(exp, plan, workdir, stop_after_steps, log, started, timing)


def _train(exp: Experiment, plan, workdir: str, stop_after_steps, log, started, timing) -> dict:
    config = exp.config
    main_process = parallel.is_main_process()
    method, mesh = exp.method, exp.mesh

    rep = parallel.replicated(mesh)
    state = parallel.to_global(jax.device_get(init_state(exp)), rep)
    leaf_paths = (_float_paths(state["latent"]), _float_paths(_checked_state(state)))
    project = jax.jit(method.project)
    projected = jax.device_get(project(state["latent"]))  # a collective: every process runs it
    if main_process:
        log(_write_summary(workdir, projected, exp.mask))

    # written in the background while training goes on (sealed when done; read back only
    # after that), so that per-epoch checkpoints cost the loop little
    ckpt = checkpoints.Checkpointer(workdir, keep=int(config.train.keep_checkpoints), asynchronous=True)
    best_ckpt = checkpoints.Checkpointer(workdir, keep=1, subdir="best", asynchronous=True)
    writer = MetricsWriter(workdir, enabled=parallel.is_main_process())
    meta = dict(best_val_accuracy=-1.0, test_at_best_val=-1.0, best_step=-1)
    if plan.resume and ckpt.all_steps():
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
        state, meta = _restore_latest(ckpt, abstract, log)
        log(f"resumed from {ckpt.directory} at step {int(state['step'])}")
    if plan.resume:
        workdir_lib.accept_resume(plan, int(state["step"]), main_process=main_process, log=log)
    # records past the restored step (all, for a new run) are redone; the steps since the
    # last record before the checkpoint come back from its meta, so records average the
    # same steps as in an uninterrupted run
    writer.truncate_after(int(state["step"]))
    meta.pop("pending", None)  # the per-step window of older checkpoints: see metric_sums
    start = int(state["step"])

    with _timed(timing, "data_s"):
        batches = _Batches(exp)
    update = batches.compile(make_update(exp))
    empty_sums = empty_metric_sums(exp, state)
    # the sums of the steps since the last record before the checkpoint come back from
    # its meta, so that records average the same steps as in an uninterrupted run
    carried = _sums_from_json(meta.pop("metric_sums", None), empty_sums)
    eval_batch = make_eval_fn(exp)
    with _timed(timing, "data_s"):
        test_batches = eval_batches(exp, exp.dataset.test)
        val_batches = None if exp.dataset.validation is None else eval_batches(exp, exp.dataset.validation)
    split_mean = make_split_mean(exp, exp.dataset.train)
    eval_every = int(config.train.eval_every_steps) or exp.steps_per_epoch
    ckpt_every = int(config.train.checkpoint_every_steps) or eval_every
    log_every = max(int(config.train.log_every_steps), 1)
    end = exp.total_steps if stop_after_steps is None else min(exp.total_steps, stop_after_steps)
    has_val = exp.dataset.validation is not None

    last_eval = {}  # step and metrics of the latest evaluation

    def run_eval(step):
        with _timed(timing, "eval_s"):
            weights = project(state["latent"])
            out = {}
            if has_val:
                val = evaluate(exp, eval_batch, weights, state["batch_stats"], exp.dataset.validation,
                               val_batches)
                out.update(val_accuracy=val["accuracy"], val_loss=val["loss"])
            test = evaluate(exp, eval_batch, weights, state["batch_stats"], exp.dataset.test,
                            test_batches)
            out.update(test_accuracy=test["accuracy"], test_loss=test["loss"])
            last_eval.clear()
            last_eval.update(out, step=step)
        score = out.get("val_accuracy", out["test_accuracy"])
        if score > meta["best_val_accuracy"]:
            meta.update(best_val_accuracy=score, test_at_best_val=out["test_accuracy"], best_step=step)
            with _timed(timing, "checkpoint_s"):
                best_ckpt.save(step, dict(params=weights, batch_stats=state["batch_stats"]), dict(meta))
        return out

    def save(step):
        with _timed(timing, "checkpoint_s"):
            weights = project(state["latent"])
            ckpt.save(step, dict(params=weights, batch_stats=state["batch_stats"]),
                      dict(meta, metric_sums=_sums_to_json(jax.device_get(sums))), state=state)

    if main_process:  # needed at the end (curves.png); imported while XLA compiles
        _import_in_background("matplotlib.figure", "matplotlib.backends.backend_agg")
    stop = {}
    previous_handlers = _install_signal_handlers(stop)
    bar, log = _progress(end, start, int(config.train.batch_size), log)
    sums = parallel.to_global(carried, rep)
    compiled = None
    t0 = time.time()
    loop_start = time.perf_counter()
    try:
        for step in range(start, end):
            args = batches.get(step)
            if compiled is None:  # compiled ahead of the first step, to time it apart
                with _timed(timing, "compile_s"):
                    compiled = update.lower(state, sums, *args).compile()
                state, sums = compiled(state, sums, *args)
                jax.block_until_ready(state["step"])
                timing["first_step_s"] = time.perf_counter() - started
            else:
                state, sums = compiled(state, sums, *args)
            done = step + 1
            if method.epoch_end is not None and done % exp.steps_per_epoch == 0:
                latent, bs = state["latent"], state["batch_stats"]
                state["latent"] = parallel.to_global(jax.device_get(method.epoch_end(
                    latent, lambda fn: split_mean(fn, latent, bs))), rep)
            is_eval = done % eval_every == 0 or done == exp.total_steps
            if done % log_every == 0 or is_eval:
                jax.block_until_ready(sums)  # the queued steps: train time, not logging
                with _timed(timing, "log_s"):
                    host = jax.device_get(sums)
                    sums = parallel.to_global(empty_sums, rep)
                    _check_finite(host, leaf_paths, ckpt, config.train.on_nonfinite, log)
                    count = max(int(host["steps"]), 1)
                    record = {k: float(v) / count for k, v in host["sums"].items()}
                if is_eval:
                    record.update(run_eval(done))
                    log(f"step {done}/{exp.total_steps}: " + ", ".join(
                        f"{k}={v:.4g}" for k, v in record.items() if k != "lr"))
                with _timed(timing, "log_s"):
                    writer.write(done, **record)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                                acc=f"{record['train_accuracy']:.3f}")
            if done % ckpt_every == 0 or done == end:
                save(done)
            bar.update(1)
            # processes stop together: they agree on a signal at the steps all of them log
            # (on one process agree_on_signal is the local signal, checked every step)
            agreed = None
            if jax.process_count() == 1 or done % log_every == 0 or done == end:
                agreed = parallel.agree_on_signal(stop.get("signal"))
            if agreed is not None:
                stop["signal"] = agreed
                if done % ckpt_every and done != end:
                    save(done)
                raise Preempted()
        preempted = end < exp.total_steps
    except Preempted:
        preempted = True
        log(f"stopped by signal {stop['signal']} ({signal.Signals(stop['signal']).name}) at step "
            f"{int(state['step'])}/{exp.total_steps}; checkpoint saved in {ckpt.directory} — "
            f"rerun the same command to resume.")
    finally:
        timing["train_s"] = time.perf_counter() - loop_start - sum(
            timing[k] for k in ("compile_s", "log_s", "eval_s", "checkpoint_s"))
        bar.close()
        for sig, h in previous_handlers.items():
            signal.signal(sig, h)
        ckpt.close()
        best_ckpt.close()
        writer.close()

    result = dict(step=int(state["step"]), preempted=preempted, signal=stop.get("signal"),
                  seconds=time.time() - t0, timing=timing,
                  best_val_accuracy=meta["best_val_accuracy"] if has_val else None,
                  test_at_best_val=meta["test_at_best_val"], best_step=meta["best_step"])
    if not preempted:
        with _timed(timing, "final_s"):
            if main_process:
                plot_curves(workdir)
            if last_eval.get("step") != result["step"]:
                test = evaluate(exp, eval_batch, project(state["latent"]), state["batch_stats"],
                                exp.dataset.test, test_batches)
                last_eval.clear()
                last_eval.update(step=result["step"], test_accuracy=test["accuracy"],
                                 test_loss=test["loss"])
        result["test_accuracy"] = result["final_test_accuracy"] = last_eval["test_accuracy"]
        # mean loss per prediction of the final network (nats; per byte for text)
        result["final_test_loss"] = last_eval["test_loss"]
        if "val_loss" in last_eval:
            result["final_val_loss"] = last_eval["val_loss"]
        if config.train.select_best and has_val:
            result["test_accuracy"] = meta["test_at_best_val"]
    if method.final_state is not None:  # every process: the latent may span hosts
        method_state = method.final_state(jax.device_get(state["latent"]))
        if main_process:
            with open(os.path.join(workdir, METHOD_STATE), "w") as f:
                json.dump(method_state, f, indent=2)
    timing["total_s"] = time.perf_counter() - started
    if main_process:
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
    parallel.sync("run finished")  # processes leave together (the runtime's shutdown barrier)
    return result


def run(config, workdir: str, overwrite: bool = False) -> dict:
    """Entry point of `jaxquant.main`: train `config` in `workdir`.

    With `overwrite`, a run in `workdir` is replaced (a folder holding anything else
    is refused); without it, a run of the same trajectory is resumed.
    """
    return train_and_evaluate(config, workdir, overwrite=overwrite)
