"""MetaQuant: meta-gradient by nested autodiff vs finite differences, the committed update
worked out by hand, LSTM state across steps, the digits run."""
import os
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import REPO, load_config
from jaxquant import train
from jaxquant.config_check import validate
from jaxquant.errors import ConfigError
from jaxquant.methods import Context, build
from jaxquant.methods.metaquant import DEFAULTS, metaquant

KERNELS = lambda p: jax.tree.map(lambda x: x.ndim == 2, p)  # noqa: E731


def _two_layer():
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    params = {"l1": {"kernel": 0.5 * jax.random.normal(k[0], (5, 6)), "bias": jnp.zeros(6)},
              "l2": {"kernel": 0.5 * jax.random.normal(k[1], (6, 3)), "bias": jnp.zeros(3)}}
    x = jax.random.normal(k[2], (16, 5))
    y = jax.random.randint(k[3], (16,), 0, 3)
    return params, x, y


def _mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["l1"]["kernel"] + p["l1"]["bias"])
    logits = h @ p["l2"]["kernel"] + p["l2"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _trajectory(method, loss, params, steps):
    """[(latent_t, state_t)] for t = 0..steps, one compiled step."""
    @jax.jit
    def step_fn(latent, state, t):
        grads = jax.grad(lambda l: loss(method.forward(l, t)))(latent)
        updates, state = method.tx.update(grads, state, latent)
        return optax.apply_updates(latent, updates), state

    latent = method.init(params)
    out = [(latent, method.tx.init(latent))]
    for t in range(steps):
        out.append(step_fn(*out[-1], t))
    return out


# Reference meta nets written per element, as the released code runs them.
def _ref_meta(phi, kind, g, pre, h=None, c=None):
    if kind == "fcgrad":
        return ((g.reshape(-1, 1) @ phi["w1"]) @ phi["w2"]).reshape(g.shape), None
    x = pre.reshape(-1, 1)
    if kind == "multifc":
        return g * (((x @ phi["w1"]) @ phi["w2"]) @ phi["w3"]).reshape(g.shape), None
    hid = phi["w_hh"].shape[0]
    h, c = h.reshape(-1, hid), c.reshape(-1, hid)
    z = x @ phi["w_ih"] + h @ phi["w_hh"] + phi["b"]
    i, f, gg, o = (z[:, j * hid:(j + 1) * hid] for j in range(4))
    sig = lambda v: 1 / (1 + jnp.exp(-v))  # noqa: E731
    c = sig(f) * c + sig(i) * jnp.tanh(gg)
    h = sig(o) * jnp.tanh(c)
    out = (h @ phi["w_out"] + phi["b_out"]).reshape(g.shape)
    return g * out, (h.reshape(*g.shape, hid), c.reshape(*g.shape, hid))


def _pre(w, forward, m=None):
    if forward == "bwn":
        return w
    t = jnp.tanh(w)
    return t / (2 * (jnp.max(jnp.abs(t)) if m is None else m)) + 0.5


def _calib(w, forward):
    t = jnp.tanh(w)
    return jnp.ones_like(w) if forward == "bwn" else (1 - t * t) / jnp.max(jnp.abs(t))


@pytest.mark.parametrize("kind,forward", [
    ("multifc", "dorefa"), ("fcgrad", "bwn"),
    pytest.param("lstmfc", "dorefa", marks=pytest.mark.slow)])  # lstmfc: ~15 s of compiling
def test_meta_gradient_matches_finite_differences_of_the_ste_surrogate(kind, forward):
    params, x, y = _two_layer()
    lr = 0.5
    method = metaquant(optax.adam(lr), lr, mask=KERNELS, meta_net=kind, forward=forward, hidden=6)
    loss = lambda p: _mlp_loss(p, x, y)  # noqa: E731
    latent, _ = _trajectory(method, loss, params, 2)[-1]  # memory now holds g_Ŵ, W̃, h, c
    impl = jax.jit(jax.grad(lambda l: loss(method.forward(l, 2))))(latent)["meta"]

    # The loss as a function of φ alone, with the quantizer replaced by its STE surrogate
    # around the current point (Ŵ ≈ Ŵ0 + ∂Ŵ/∂W_fwd · δW_fwd), from the formulas only.
    phi0 = latent["meta"]
    names = ["l1", "l2"]

    def surrogate(phi):
        p = jax.tree.map(lambda a: a, latent["weights"])
        for name, mem in zip(names, latent["memory"]):
            w = latent["weights"][name]["kernel"]
            args = (mem["grad"], mem.get("pre"), mem.get("h"), mem.get("c"))
            m, _ = _ref_meta(phi, kind, *args)
            m0, _ = _ref_meta(phi0, kind, *args)
            w_fwd = w + mem["update"] - lr * _calib(w, forward) * (m - m0)
            w_fwd0 = w + mem["update"]
            if forward == "dorefa":
                mx = jnp.max(jnp.abs(jnp.tanh(w_fwd0)))
                q0 = jnp.where(w_fwd0 >= 0, 1.0, -1.0)
                p[name]["kernel"] = q0 + 2 * (_pre(w_fwd, forward, mx) - _pre(w_fwd0, forward, mx))
            else:
                alpha = jnp.mean(jnp.abs(w_fwd0))
                gate = (jnp.abs(w_fwd0) <= 1).astype(w.dtype)
                p[name]["kernel"] = alpha * (jnp.sign(w_fwd0) + gate * (w_fwd - w_fwd0))
        return loss(p)

    surrogate = jax.jit(surrogate)
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), phi0)
        vnorm = np.sqrt(sum(float(jnp.sum(a * a)) for a in jax.tree.leaves(v)))
        v = jax.tree.map(lambda a: a / vnorm, v)
        eps = 1e-2
        plus = surrogate(jax.tree.map(lambda a, b: a + eps * b, phi0, v))
        minus = surrogate(jax.tree.map(lambda a, b: a - eps * b, phi0, v))
        fd = float(plus - minus) / (2 * eps)
        ad = sum(float(jnp.sum(a * b)) for a, b in zip(jax.tree.leaves(impl), jax.tree.leaves(v)))
        assert abs(ad) > 1e-4  # the meta path carries a gradient at all
        assert ad == pytest.approx(fd, rel=2e-2, abs=1e-5)


@pytest.mark.parametrize("kind,variant", [("multifc", "paper"), ("fcgrad", "released")])
def test_sgd_commits_minus_lr_c_times_meta_output_not_the_ste_gradient(kind, variant):
    """One linear layer, L = |x Ŵ − y|² / (2n): g_Ŵ = xᵀ(xŴ − y)/n by hand.

    Step 0 only records g_Ŵ⁰ and W̃⁰; step 1 commits W¹ = W⁰ − lr·c(W⁰)⊙M¹ with
    M¹ = meta_φ(g_Ŵ⁰, W̃⁰) (both variants: the released one is out of sync only in
    its forward).
    """
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 3)).astype(np.float32) * 0.5
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.normal(size=(10, 3)).astype(np.float32)
    lr = 0.1
    method = metaquant(optax.sgd(lr), lr, meta_net=kind, variant=variant, hidden=7)
    loss = lambda p: 0.5 * jnp.mean(jnp.sum((x @ p["w"] - y) ** 2, -1))  # noqa: E731
    (latent0, _), (latent1, _), (latent2, _) = _trajectory(method, loss, {"w": jnp.asarray(w0)}, 2)
    np.testing.assert_array_equal(latent1["weights"]["w"], w0)  # step 0: no meta gradient yet

    w_hat = np.where(w0 >= 0, 1.0, -1.0)
    g0 = x.T @ (x @ w_hat - y) / len(x)
    np.testing.assert_allclose(latent1["memory"][0]["grad"], g0, rtol=1e-5, atol=1e-6)
    t = np.tanh(w0)
    pre0 = t / (2 * np.abs(t).max()) + 0.5
    phi = jax.tree.map(np.asarray, latent1["meta"])
    np.testing.assert_array_equal(phi["w1"], latent0["meta"]["w1"])  # φ unchanged at step 0
    m1 = np.asarray(_ref_meta(phi, kind, jnp.asarray(g0), jnp.asarray(pre0))[0])
    c = (1 - t * t) / np.abs(t).max()

    step = np.asarray(latent2["weights"]["w"]) - w0
    np.testing.assert_allclose(step, -lr * c * m1, rtol=1e-4, atol=1e-7)
    ste_step = -lr * g0
    assert not np.allclose(step, ste_step, rtol=0.1)


def test_paper_variant_commits_the_forward_weights_released_runs_one_step_behind():
    params, x, y = _two_layer()
    loss = lambda p: _mlp_loss(p, x, y)  # noqa: E731
    out = {}
    for variant in ("paper", "released"):
        method = metaquant(optax.sgd(0.3), 0.3, mask=KERNELS, variant=variant)
        (latent, _), (after, _) = _trajectory(method, loss, params, 4)[3:]
        # the committed W: its hard quantization, and (dorefa: W̃ of W_fwd) the memory
        w_fwd = [latent["weights"][n]["kernel"] + m["update"] for n, m in zip(["l1", "l2"], latent["memory"])]
        committed = [after["weights"][n]["kernel"] for n in ["l1", "l2"]]
        out[variant] = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(w_fwd, committed)]
        np.testing.assert_array_equal(method.project(after)["l1"]["kernel"],
                                      jnp.where(committed[0] >= 0, 1.0, -1.0))
    assert max(out["paper"]) < 1e-6          # W ← sg(W_fwd)
    assert max(out["released"]) > 1e-4       # W ← W + u_t, but the forward ran at W + u_{t−1}


def test_lstm_state_is_kept_per_element_and_carried_across_steps():
    params, x, y = _two_layer()
    loss = lambda p: _mlp_loss(p, x, y)  # noqa: E731
    method = metaquant(optax.sgd(0.3), 0.3, mask=KERNELS, meta_net="lstmfc", hidden=5)
    lat = [latent for latent, _ in _trajectory(method, loss, params, 3)]
    mem = [l["memory"][1] for l in lat]  # layer l2, kernel (6, 3)
    assert mem[3]["h"].shape == (6, 3, 5)
    np.testing.assert_array_equal(mem[1]["h"], 0.0)  # step 0 runs no meta net
    # step t's update leaves LSTM(W̃^{t−1}; state^{t−1}) with φ of step t (before its meta step)
    h2, c2 = _ref_meta(lat[1]["meta"], "lstmfc", mem[1]["grad"], mem[1]["pre"], mem[1]["h"], mem[1]["c"])[1]
    np.testing.assert_allclose(mem[2]["h"], h2, rtol=1e-5, atol=1e-6)
    h3, c3 = _ref_meta(lat[2]["meta"], "lstmfc", mem[2]["grad"], mem[2]["pre"], mem[2]["h"], mem[2]["c"])[1]
    np.testing.assert_allclose(mem[3]["h"], h3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mem[3]["c"], c3, rtol=1e-5, atol=1e-6)
    fresh = _ref_meta(lat[2]["meta"], "lstmfc", mem[2]["grad"], mem[2]["pre"],
                      0 * mem[2]["h"], 0 * mem[2]["c"])[1]
    assert float(jnp.max(jnp.abs(fresh[1] - mem[3]["c"]))) > 1e-3  # not reset between steps


def test_config_keys_are_the_defaults_and_unknown_ones_are_refused():
    c = load_config("metaquant_dorefa_sgd_digits")
    assert set(c.method.keys()) - {"name"} <= set(DEFAULTS["metaquant"])
    ctx = Context(config=c, optimizer=optax.sgd(0.1), learning_rate=lambda s: 0.1,
                  mask=KERNELS, steps_per_epoch=1)
    build("metaquant", ctx)
    c.method.meta_nett = "lstmfc"
    with pytest.raises(ConfigError, match="meta_net"):
        build("metaquant", ctx._replace(config=c))
    c = load_config("metaquant_dorefa_sgd_digits")
    c.method.meta_net = "lstm"
    with pytest.raises(ConfigError, match="lstmfc"):
        build("metaquant", ctx._replace(config=c))


def test_table1_configs_validate():
    table = runpy.run_path(os.path.join(REPO, "configs", "metaquant_cifar.py"))["get_config"]
    for arg in ("resnet20,dorefa,sgd,multifc", "resnet44,bwn,adam,fcgrad",
                "resnet110,dorefa,sgd,lstmfc"):
        c = table(arg)
        validate(c)
        assert c.method.name == "metaquant" and c.optimizer.lr == 1e-3
        assert c.init_checkpoint == f"runs/fp_{c.dataset.name}_{c.model.name}"
    assert table("resnet56,dorefa,sgd,multifc").dataset.name == "cifar100"
    assert load_config("metaquant_cifar10_resnet20_dorefa_sgd_lstmfc").method.meta_net == "lstmfc"


def test_metaquant_dorefa_sgd_digits_reaches_90_percent(tmp_path):
    c = load_config("metaquant_dorefa_sgd_digits")
    c.model.features = (64,)
    c.train.update(epochs=5, log_every_steps=110)
    result = train.train_and_evaluate(c, str(tmp_path), log=lambda *_: None)
    assert result["test_accuracy"] >= 0.90


def test_every_table_config_runs_the_released_step_rule():
    """Table 1 was produced by the released meta-quantize.py: every table config (and the
    launcher's rows) must pick variant='released'; the library default stays 'paper'."""
    import glob
    import itertools
    import re
    assert DEFAULTS["metaquant"]["variant"] == "paper"
    table = runpy.run_path(os.path.join(REPO, "configs", "metaquant_cifar.py"))["get_config"]
    for net, fwd, opt, meta in itertools.product(
            ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"), ("dorefa", "bwn"),
            ("sgd", "adam"), ("multifc", "fcgrad", "lstmfc")):
        assert table(f"{net},{fwd},{opt},{meta}").method.variant == "released"
    files = glob.glob(os.path.join(REPO, "configs", "metaquant_*.py"))
    assert len(files) >= 15
    for path in files:
        name = os.path.basename(path)[:-3]
        cfg = table() if name == "metaquant_cifar" else load_config(name)
        assert cfg.method.name == "metaquant" and cfg.method.variant == "released", name
    launcher = open(os.path.join(REPO, "launch", "metaquant.sh")).read()
    assert "configs/metaquant_cifar.py" in launcher and "--config.method." not in launcher
    assert set(re.findall(r"configs/(metaquant\w*)\.py", launcher)) == {"metaquant_cifar"}


def test_launcher_reports_the_papers_statistic_the_mean_of_the_last_10_evaluations(tmp_path):
    """launch/metaquant.sh's last10 on a run logged over 12 epochs, one epoch logged twice
    (a resumed run): the mean of epochs 3..12, each step once."""
    import json
    import subprocess
    import sys
    run = tmp_path / "resnet20_dorefa_sgd_multifc"
    run.mkdir()
    accs = [0.10, 0.20, 0.50, 0.52, 0.54, 0.56, 0.58, 0.60, 0.62, 0.64, 0.66, 0.70]
    lines = [dict(step=100 * (i + 1), test_accuracy=a) for i, a in enumerate(accs)]
    lines.insert(5, dict(step=50, train_loss=1.0))                       # a log-only record
    lines.insert(4, dict(step=500, test_accuracy=0.30))                  # logged before a
    # preemption; the resumed run logged step 500 again (0.54): the later record counts
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    script = os.path.join(REPO, "launch", "metaquant.sh")
    # the launcher's function definitions only (sourcing it would run the table)
    defs = subprocess.run(["sed", "-n", "/^last10() {/,/^}/p", script], capture_output=True,
                          text=True, check=True).stdout
    assert defs.startswith("last10()")
    out = subprocess.run(["bash", "-c", defs + "\nlast10 resnet20_dorefa_sgd_multifc 88.94"],
                         env=dict(os.environ, RUNS=str(tmp_path), PYTHON=sys.executable),
                         capture_output=True, text=True, check=True).stdout
    expected = 100 * sum(accs[2:]) / 10                                  # 59.20
    assert out.split() == ["resnet20_dorefa_sgd_multifc", "paper", "88.94", "last-10", "mean",
                           f"{expected:.2f}"]
    assert (tmp_path / "table_last10.tsv").read_text().split("\t")[2] == f"{expected:.2f}"


@pytest.mark.slow  # ~100 python start-ups
def test_launcher_dry_run_every_row_with_a_seed(tmp_path):
    """launch/metaquant.sh with a stand-in python that records each training command and
    writes a one-evaluation result: 5 warm starts and 50 cells, each cell seeded and
    labelled by SEED, warm-started from its net's run, and followed by its last-10 line."""
    import subprocess
    import sys
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" != -m ]; then exec "$REAL_PYTHON" "$@"; fi\n'
        'echo "$@" >> "$CALLS"\n'
        'while [ $# -gt 0 ]; do [ "$1" = --workdir ] && w=$2; shift; done\n'
        'mkdir -p "$w"; echo \'{"test_accuracy": 0.5}\' > "$w/result.json"\n'
        'echo \'{"step": 1, "test_accuracy": 0.5}\' > "$w/metrics.jsonl"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = dict(os.environ, PYTHON=str(fake), REAL_PYTHON=sys.executable, CALLS=str(calls),
               RUNS=str(tmp_path / "runs"), SEED="2")
    out = subprocess.run(["bash", os.path.join(REPO, "launch", "metaquant.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    cmds = calls.read_text().splitlines()
    fp = [c for c in cmds if "fp_cifar10_resnet20.py" in c]
    cells = [c for c in cmds if c not in fp]
    assert len(fp) == 5 and len(cells) == 50
    assert all("--config.seed=2" in c and "_seed2 " in c + " " for c in cells)
    assert not any("--config.seed" in c for c in fp)  # warm starts shared by every seed
    for c in cells:
        net = os.path.basename(c.split("--workdir ")[1].split()[0]).split("_")[0]
        assert f"--config.init_checkpoint={tmp_path}/runs/fp_" in c and c.endswith(f"_{net}")
    assert out.count("last-10 mean") == 50 and "FAILED" not in out
