"""ProxQuant: prox operators, the optax transforms, freeze / reset, layer rules, digits run."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

import jaxquant as jq
from conftest import load_config
from jaxquant import methods, models, train
from jaxquant import quantizers as Q
from jaxquant.masks import param_paths, quant_mask
from jaxquant.methods import proxquant as PQ
from jaxquant.methods.base import Context

multibit = jax.jit(Q.alternating_multibit, static_argnames=("bits", "rounds", "by_row"))

# --- prox operators and the multi-bit quantizer ------------------------------------------

def test_prox_binary_soft_thresholds_toward_plus_minus_one():
    theta = jnp.array([0.5, -0.2, 1.5, -3.0, 0.0])
    np.testing.assert_allclose(PQ.prox_binary(theta, 0.1), [0.6, -0.3, 1.4, -2.9, 0.0], rtol=1e-6)


def test_prox_binary_at_strength_one_or_more_is_sign_inside_the_box():
    theta = jnp.array([0.5, -0.2, 1.5, -3.0, 0.0])
    # |theta| <= 2 lands on +-1; -3 is 2 away from -1 and moves by s only.
    np.testing.assert_allclose(PQ.prox_binary(theta, 1.0), [1, -1, 1, -2, 0])
    np.testing.assert_allclose(PQ.prox_binary(theta, 2.5), [1, -1, 1, -1, 0])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3, 3, width=32, allow_subnormal=False), min_size=8, max_size=8),
       st.floats(0, 2, width=32))
def test_prox_binary_moves_each_weight_by_s_toward_the_nearest_sign(theta, s):
    theta = np.array(theta, np.float32)
    out = np.asarray(PQ.prox_binary(jnp.asarray(theta), s))
    target = np.sign(theta)
    # the distance to sign(theta) shrinks by s (never past it), the sign is kept
    np.testing.assert_allclose(np.abs(out - target), np.maximum(np.abs(theta - target) - s, 0),
                               atol=1e-5)
    assert np.all(out * theta >= 0)


def test_prox_ternary_averages_with_the_twn_quantization():
    theta = jnp.array([1.0, -0.5, 0.1, 0.4])
    # Delta = 0.7 * mean|theta| = 0.35 -> q = [0.7 (mean of 1, 0.4), -0.5, 0, 0.7]
    np.testing.assert_allclose(Q.twn(theta), [0.7, -0.5, 0.0, 0.7], rtol=1e-6)
    np.testing.assert_allclose(PQ.prox_ternary(theta, 1.0), [0.85, -0.5, 0.05, 0.55], rtol=1e-6)
    np.testing.assert_allclose(PQ.prox_ternary(theta, 0.5), [0.9, -0.5, 0.1 / 1.5, 0.5], rtol=1e-6)


def test_multibit_greedy_then_alternating_refinement_by_hand():
    w = jnp.array([5.0, 1.0, 1.0, 1.0])
    # greedy: b1 = 1, a1 = 2; r = [3, -1, -1, -1], b2 = sign(r), a2 = 1.5 -> [3.5, .5, .5, .5]
    np.testing.assert_allclose(multibit(w, bits=2, rounds=1), [3.5, 0.5, 0.5, 0.5])
    # least squares: B^T B = [[4, -2], [-2, 4]], B^T w = [8, 2] -> alpha = (3, 2): exact
    np.testing.assert_allclose(multibit(w, bits=2, rounds=3), [5, 1, 1, 1], rtol=1e-5)
    prox = jax.jit(PQ.prox_multibit, static_argnames=("bits", "rounds"))
    np.testing.assert_allclose(prox(w, 1.0, bits=2, rounds=1), [4.25, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(prox(w, 1.0, bits=2), w, rtol=1e-5)


def test_multibit_rows_are_the_output_units_of_a_kernel():
    w = jnp.array([[1.0, -4.0], [-3.0, 2.0]]).reshape(1, 1, 2, 2)  # (kh, kw, in, out)
    # 1 bit per output channel: alpha = mean|w[..., j]| = 2 and 3
    np.testing.assert_allclose(multibit(w, bits=1)[0, 0], [[2, -3], [-2, 3]])
    np.testing.assert_allclose(multibit(w, bits=1, by_row=False)[0, 0],
                               [[2.5, -2.5], [-2.5, 2.5]])
    k = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 4, 5))
    q = multibit(k, bits=2)
    per_channel = jax.vmap(lambda c: multibit(c, bits=2, by_row=False), in_axes=-1, out_axes=-1)(k)
    np.testing.assert_allclose(q, per_channel, rtol=1e-5, atol=1e-6)
    for j in range(5):
        assert len(np.unique(np.asarray(q[..., j]))) <= 4


def test_alternating_refinement_lowers_the_error_of_greedy():
    w = jax.random.normal(jax.random.PRNGKey(1), (64, 32))
    err = lambda q: float(jnp.sum((w - q) ** 2))  # noqa: E731
    greedy, alt = multibit(w, bits=2, rounds=1), multibit(w, bits=2, rounds=3)
    assert err(alt) < err(greedy)


# --- optax transforms --------------------------------------------------------------------

def test_prox_quant_transform_equals_prox_of_the_step_minus_params():
    params = {"a": jnp.array([0.3, -0.9, 1.2]), "b": jnp.array([[0.5, -0.1]])}
    grads = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, 0.2]])}
    base = optax.adam(0.1)
    u, _ = base.update(grads, base.init(params), params)
    tx = optax.chain(optax.adam(0.1), jq.prox_quant(jq.prox_binary, 0.05))
    out, state = tx.update(grads, tx.init(params), params)
    want = jax.tree.map(lambda p, d: jq.prox_binary(p + d, 0.05) - p, params, u)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), out, want)
    assert int(state[1].count) == 1


def test_homotopy_strength_is_lr_times_reg_rate_times_epoch():
    lr = optax.piecewise_constant_schedule(0.01, {30: 0.1})
    s = jq.homotopy_strength(lr, 1e-4, steps_per_epoch=10)
    for t, want in [(0, 0.0), (9, 0.0), (10, 1e-6), (29, 2e-6), (35, 3e-7)]:
        assert float(s(t)) == pytest.approx(want, rel=1e-6, abs=1e-12), t
    assert float(jq.homotopy_strength(0.01, 1e-4, 10)(25)) == pytest.approx(2e-6)


def test_prox_quant_uses_the_schedule_at_its_own_step_count():
    p = jnp.array([0.5])
    tx = jq.prox_quant(jq.prox_binary, lambda t: 0.1 * t)
    state = tx.init(p)
    for t in range(3):
        u, state = tx.update(jnp.zeros(1), state, p)
        np.testing.assert_allclose(p + u, [0.5 + 0.1 * t], rtol=1e-6)


def test_freeze_quantized_hard_sets_at_the_freeze_step_then_holds():
    tx = jq.freeze_quantized(Q.sign, freeze_step=3)
    p, state = jnp.array([0.2, -0.4]), None
    state = tx.init(p)
    seen = []
    for _ in range(5):
        u, state = tx.update(jnp.array([0.1, 0.1]), state, p)
        p = p + u
        seen.append(np.asarray(p))
    np.testing.assert_allclose(seen[:2], [[0.3, -0.3], [0.4, -0.2]], rtol=1e-6)
    np.testing.assert_array_equal(seen[2:], [[1, -1]] * 3)  # sign(0.5, -0.1), then frozen


def test_reset_state_every_restarts_adam_but_keeps_the_lr_schedule():
    lr = optax.piecewise_constant_schedule(1.0, {3: 0.5})
    tx = jq.reset_state_every(optax.adam(lr), every_steps=3)
    fresh = optax.adam(0.5)
    grads = [jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0]), jnp.array([-1.0, 1.0]),
             jnp.array([2.0, 0.1]), jnp.array([-0.3, 0.7])]
    p = jnp.zeros(2)
    state, f_state = tx.init(p), fresh.init(p)
    for t, g in enumerate(grads):
        u, state = tx.update(g, state, p)
        if t >= 3:  # from the reset on: a new Adam at the scheduled lr 0.5
            v, f_state = fresh.update(g, f_state, p)
            np.testing.assert_allclose(u, v, rtol=1e-6)
    plain = optax.adam(lr)
    s = plain.init(p)
    for g in grads[:4]:
        u, s = plain.update(g, s, p)
    assert not np.allclose(u, fresh.update(grads[3], fresh.init(p), p)[0])  # reset matters


# --- the method --------------------------------------------------------------------------

PARAMS = {"dense": {"kernel": jnp.array([[0.5, -2.0], [0.0, 1.5]]), "bias": jnp.array([0.3, -0.7])}}
KERNEL_ONLY = lambda p: quant_mask(p, include=[".*kernel"], strict=False)  # noqa: E731


def _ctx(steps_per_epoch=2, lr=0.1, **method):
    cfg = ml_collections.ConfigDict({"method": dict(name="proxquant", **method)})
    return Context(config=cfg, optimizer=optax.sgd(lr), learning_rate=lambda t: lr,
                   mask=KERNEL_ONLY, steps_per_epoch=steps_per_epoch)


def test_method_prox_step_then_clip_on_quantized_leaves_only():
    m = methods.build("proxquant", _ctx(reg_rate=1.0, freeze_epoch=0))
    latent = m.init(PARAMS)
    state = m.tx.init(latent)
    grads = {"dense": {"kernel": -jnp.ones((2, 2)), "bias": jnp.array([-1.0, 1.0])}}  # sgd: +0.1
    for t in range(3):  # epoch(t) = t // 2 -> s = 0.1 * 1.0 * epoch = 0, 0, 0.1
        upd, state = m.tx.update(grads, state, latent)
        latent = optax.apply_updates(latent, upd)
    # kernel: 0.5 -> .6 -> .7 -> prox(.8, .1) = .9; -2 -> clip(-1.9) = -1 -> -.9 -> prox(-.8) = -.9;
    # 0 -> .1 -> .2 -> prox(.3) = .4; 1.5 -> 1 -> 1 -> prox(1.1) = 1.
    np.testing.assert_allclose(latent["dense"]["kernel"], [[0.9, -0.9], [0.4, 1.0]], rtol=1e-5)
    np.testing.assert_allclose(latent["dense"]["bias"], [0.6, -1.0], rtol=1e-5)  # plain sgd
    np.testing.assert_array_equal(m.forward(latent, 3)["dense"]["kernel"], latent["dense"]["kernel"])
    np.testing.assert_array_equal(m.project(latent)["dense"]["kernel"], [[1, -1], [1, 1]])
    np.testing.assert_array_equal(m.project(latent)["dense"]["bias"], latent["dense"]["bias"])


def test_method_lazy_mode_is_proxquant_binary_connect():
    m = methods.build("proxquant", _ctx(projection_mode="lazy", freeze_epoch=0))
    bc = jq.binary_connect(optax.sgd(0.1), mask=KERNEL_ONLY, variant="proxquant")
    g = {"dense": {"kernel": jnp.array([[-5.0, 1.0], [2.0, -3.0]]), "bias": jnp.array([1.0, 2.0])}}
    a, _ = m.tx.update(g, m.tx.init(PARAMS), PARAMS)
    b, _ = bc.tx.update(g, bc.tx.init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, m.forward(PARAMS, 0), bc.forward(PARAMS, 0))
    # other kinds: the same straight-through method on their quantizer (ternary: TWN)
    t = methods.build("proxquant", _ctx(projection_mode="lazy", kind="ternary", freeze_epoch=0))
    np.testing.assert_allclose(t.forward(PARAMS, 0)["dense"]["kernel"], Q.twn(PARAMS["dense"]["kernel"]))


def test_method_rejects_unknown_kind_and_mode_naming_the_key():
    with pytest.raises(ValueError, match=r"config.method.kind.*binary, ternary, multibit"):
        methods.build("proxquant", _ctx(kind="quaternary"))
    with pytest.raises(ValueError, match=r"config.method.projection_mode.*prox, lazy"):
        methods.build("proxquant", _ctx(projection_mode="eager"))


def test_ternary_projection_keeps_frozen_ternary_weights():
    m = methods.build("proxquant", _ctx(kind="ternary"))
    frozen = {"dense": {"kernel": jnp.array([[2.0, 0.0], [0.0, -0.1]]), "bias": jnp.zeros(2)}}
    # TWN alone would zero -0.1 (Delta = 0.7 * 0.525 > 0.1); frozen weights stay as they are.
    assert float(Q.twn(frozen["dense"]["kernel"])[1, 1]) == 0.0
    np.testing.assert_array_equal(m.project(frozen)["dense"]["kernel"], frozen["dense"]["kernel"])
    w = jnp.array([[1.0, -0.5], [0.1, 0.4]])
    np.testing.assert_allclose(m.project({"dense": {"kernel": w, "bias": jnp.zeros(2)}})["dense"]["kernel"],
                               Q.twn(w))


def test_multibit_method_projects_with_alternating_quantization():
    m = methods.build("proxquant", _ctx(kind="multibit", bits=2))
    w = jax.random.normal(jax.random.PRNGKey(2), (6, 4))
    out = jax.jit(m.project)({"dense": {"kernel": w, "bias": jnp.zeros(4)}})["dense"]["kernel"]
    np.testing.assert_allclose(out, multibit(w, bits=2), rtol=1e-5, atol=1e-6)


def _tiny_digits(**method):
    c = load_config("proxquant_binary_digits")
    c.model.features = (32,)
    c.method.update(**method)
    c.train.update(batch_size=64)
    return c


def test_freeze_holds_quantized_leaves_while_bn_keeps_training_and_adam_resets():
    exp = train.build_experiment(_tiny_digits(freeze_epoch=1, reset_optimizer_every_epoch=True))
    spe = exp.steps_per_epoch
    step = jax.jit(train.make_train_step(exp))
    state = train.init_state(exp)
    images, labels = exp.dataset.train.images[:64], exp.dataset.train.labels[:64]
    history = []
    for _ in range(spe + 3):
        state, _ = step(state, images, labels)
        history.append(jax.device_get(state["latent"]))
    before, at, after = history[spe - 2], history[spe - 1], history[-1]
    assert np.all(np.abs(before["stem"]["kernel"]) < 1)  # still real-valued before the freeze
    np.testing.assert_allclose(np.abs(at["stem"]["kernel"]), 1.0, atol=1e-6)  # hard-set at step spe
    assert np.mean(np.sign(at["stem"]["kernel"]) == np.sign(before["stem"]["kernel"])) > 0.99
    np.testing.assert_array_equal(history[spe]["stem"]["kernel"], after["stem"]["kernel"])
    np.testing.assert_array_equal(np.abs(after["head"]["kernel"]), 1.0)
    assert np.any(history[spe]["bn_stem"]["scale"] != after["bn_stem"]["scale"])
    assert np.any(history[spe]["head"]["bias"] != after["head"]["bias"])
    adam = [x for x in jax.tree.leaves(state["opt_state"],
                                       is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(x, optax.ScaleByAdamState)]
    assert [int(x.count) for x in adam] == [3]  # Adam restarted at step spe


def test_paper_layer_rules_on_resnet20_option_b():
    net = models.build(ml_collections.ConfigDict(dict(name="resnet20", shortcut="B")), 10)
    params = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                             train=False))["params"]
    paths = param_paths(params)

    def quantized(name):
        q = load_config(name).quant
        flags = jax.tree.leaves(quant_mask(params, list(q.include), list(q.exclude)))
        return {p for p, f in zip(paths, flags) if f}

    kernels = {p for p in paths if p.endswith("kernel")}
    shortcuts = {p for p in paths if p.endswith("/shortcut/kernel")}
    assert len(shortcuts) == 2
    binary = quantized("proxquant_binary_cifar10_resnet20")
    assert binary == kernels - shortcuts  # stem and head kernel in; BN, shortcuts, head bias out
    assert {"stem/kernel", "head/kernel"} <= binary and "head/bias" not in binary
    assert quantized("proxquant_bc_cifar10_resnet20") == binary
    ternary = quantized("proxquant_ternary_cifar10_resnet20")
    assert ternary == kernels - shortcuts - {"stem/kernel", "head/kernel"}


def test_cifar_table_configs_carry_the_paper_hyperparameters():
    b, t, bc = (load_config(f"proxquant_{v}_cifar10_resnet32") for v in ("binary", "ternary", "bc"))
    for c in (b, t, bc):
        assert c.model.name == "resnet32" and c.model.shortcut == "B"
        assert c.optimizer.name == "adam" and c.optimizer.lr == 1e-2
        assert c.init_checkpoint == "runs/fp_cifar10_resnet32"
        assert set(c.method.keys()) == {"name", *PQ.DEFAULTS["proxquant"]}
    assert (b.train.epochs, b.method.freeze_epoch, b.train.batch_size, b.schedule.kind) == (300, 200, 128, "constant")
    assert (t.train.epochs, t.method.freeze_epoch, t.method.kind) == (600, 400, "ternary")
    assert bc.method.projection_mode == "lazy" and tuple(bc.schedule.boundaries) == (81, 122)
    assert load_config("fp_cifar10_resnet44").model.name == "resnet44"


def test_proxquant_binary_digits_reaches_95_percent(tmp_path):
    result = train.train_and_evaluate(load_config("proxquant_binary_digits"), str(tmp_path),
                                      log=lambda *_: None)
    assert result["test_accuracy"] >= 0.95


# --- the table configs run the official code --------------------------------------------

TABLE_CELLS = [f"proxquant_{v}_cifar10_resnet{d}" for v in ("binary", "ternary", "bc")
               for d in (20, 32, 44, 56)]


def test_every_table_cell_rebuilds_adam_each_epoch_on_imagenet_normalised_cifar():
    import os
    from conftest import REPO
    for name in TABLE_CELLS:
        c = load_config(name)
        assert c.method.reset_optimizer_every_epoch is True, name
        assert c.dataset.normalization == "imagenet", name
        assert c.method.by_row is False, name  # the code's per-tensor multi-bit default
    assert PQ.DEFAULTS["proxquant"]["reset_optimizer_every_epoch"] is False  # the paper's Adam
    assert load_config("proxquant_ternary_cifar10_resnet20").train.batch_size == 256
    bc = load_config("proxquant_bc_cifar10_resnet20")
    assert (bc.schedule.kind, bc.schedule.unit, bc.schedule.factor) == ("piecewise", "epoch", 0.1)
    # the warm starts the cells load are trained on the same normalisation
    with open(os.path.join(REPO, "launch", "proxquant.sh")) as f:
        fp_rows = [line for line in f if line.startswith("row fp_")]
    assert len(fp_rows) == 4 and all("--config.dataset.normalization=imagenet" in r for r in fp_rows)


def _numpy_adam(grads, lr, reset_every=0, b1=0.9, b2=0.999, eps=1e-8):
    """Adam's steps by its formula (optax's eps placement); state rebuilt every `reset_every`."""
    m = v = 0.0
    k, steps = 0, []
    for t, g in enumerate(grads):
        if reset_every and t > 0 and t % reset_every == 0:
            m = v = 0.0
            k = 0
        k += 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        steps.append(-lr * (m / (1 - b1 ** k)) / (np.sqrt(v / (1 - b2 ** k)) + eps))
    return np.array(steps)


@pytest.mark.parametrize("name, prox_shift", [
    ("proxquant_binary_cifar10_resnet20", 1e-2 * 1e-4 * 1),  # s = lr * reg_rate * epoch 1
    ("proxquant_ternary_cifar10_resnet20", 0.0),  # TWN(+-t) = +-t: the prox leaves it
    ("proxquant_bc_cifar10_resnet20", 0.0),       # lazy: no prox on the latent
])
def test_first_step_of_an_epoch_moves_a_latent_by_about_lr(name, prox_shift):
    # Three steps of gradient +1 (epoch 0, 3 steps per epoch), then a tiny reversed gradient
    # -1e-4 at the first step of epoch 1. A rebuilt Adam has m_hat = g, v_hat = g^2 there, so
    # the latent moves by lr * 1e-4 / (1e-4 + 1e-8) ~ +lr; plain Adam's momentum keeps going down.
    lr = 1e-2
    grads = [1.0, 1.0, 1.0, -1e-4]
    for reset in (True, False):
        config = load_config(name)
        config.method.reset_optimizer_every_epoch = reset
        ctx = Context(config=config, optimizer=optax.adam(lr), learning_rate=lambda t: lr,
                      mask=KERNEL_ONLY, steps_per_epoch=3)
        m = methods.build("proxquant", ctx)
        latent = m.init({"dense": {"kernel": jnp.array([[0.5, -0.5]]), "bias": jnp.zeros(2)}})
        state = m.tx.init(latent)
        seen = []
        for g in grads:
            gk = jnp.array([[g, -g]])
            upd, state = m.tx.update({"dense": {"kernel": gk, "bias": jnp.zeros(2)}}, state, latent)
            latent = optax.apply_updates(latent, upd)
            seen.append(float(latent["dense"]["kernel"][0, 0]))
        steps = _numpy_adam(grads, lr, reset_every=3 if reset else 0)
        expected = 0.5 + np.cumsum(steps)
        expected[3] += prox_shift
        np.testing.assert_allclose(seen, expected, rtol=0, atol=3e-7)  # float32 Adam
        np.testing.assert_allclose(float(latent["dense"]["kernel"][0, 1]), -expected[3], atol=3e-7)
        if reset:
            np.testing.assert_allclose(steps[3], lr * 1e-4 / (1e-4 + 1e-8), rtol=1e-6)
        else:
            assert steps[3] < -0.5 * lr  # without the rebuild the step keeps its direction


def _write_images(root, colours):
    from PIL import Image
    for split in ("train", "test"):
        for i, colour in enumerate(colours):
            d = root / split / f"class{i}"
            d.mkdir(parents=True)
            for j in range(2):
                Image.new("RGB", (4, 4), colour).save(d / f"{j}.png")


def test_imagenet_normalization_option_values(tmp_path):
    from jaxquant import data
    from jaxquant.data.augment import normalize
    _write_images(tmp_path / "imgs", [(255, 0, 0), (0, 255, 102)])

    def load(normalization):
        cfg = ml_collections.ConfigDict(dict(name=f"image_folder:{tmp_path / 'imgs'}", validation=0,
                                             augment="", data_dir=str(tmp_path / "cache"),
                                             normalization=normalization))
        return data.load(cfg)

    own = load("")  # the dataset's own statistics: R, G in {0, 1}; B in {0, 0.4}
    np.testing.assert_allclose(own.mean, [0.5, 0.5, 0.2], atol=1e-6)
    np.testing.assert_allclose(own.std, [0.5, 0.5, 0.2], atol=1e-6)
    ds = load("imagenet")
    np.testing.assert_allclose(ds.mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(ds.std, [0.229, 0.224, 0.225])
    red = normalize(jnp.array([[[[255, 0, 0]]]], jnp.uint8), ds.mean, ds.std)
    np.testing.assert_allclose(red[0, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
                               rtol=1e-6)
    cifar = load("cifar")
    np.testing.assert_allclose(cifar.mean, [0.4914, 0.4822, 0.4465])
    with pytest.raises(data.DataError, match=r"config.dataset.normalization.*imagenet, cifar"):
        load("imagnet")
    digits = ml_collections.ConfigDict(dict(name="digits", validation=0, augment="", data_dir="",
                                            normalization="imagenet"))
    with pytest.raises(data.DataError, match=r"normalization='imagenet'.*1 channel"):
        data.load(digits)
