import ml_collections
import numpy as np
import pytest

from jaxquant.config import base_config
from jaxquant.errors import ConfigError
from jaxquant.optim import make_optimizer, make_schedule


def sched(**kw):
    c = base_config().schedule
    c.update(kw)
    return c


def test_piecewise_by_epoch_multiplies_at_each_boundary():
    s = make_schedule(sched(kind="piecewise", unit="epoch", boundaries=[2, 3], factor=0.1),
                      1.0, steps_per_epoch=10, total_steps=50)
    np.testing.assert_allclose([s(0), s(19), s(20), s(29), s(30), s(49)],
                               [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_piecewise_every_n_steps_is_periodic_decay():
    # MD/PMF: lr x lrs every 30k iterations, first decay at 30k.
    s = make_schedule(sched(kind="piecewise", every=30_000, factor=0.3), 1e-3, 100, 100_000)
    np.testing.assert_allclose([s(29_999), s(30_000), s(60_000), s(90_000)],
                               [1e-3, 3e-4, 9e-5, 2.7e-5], rtol=1e-5)


def test_cosine_reaches_zero_at_the_end_and_half_in_the_middle():
    s = make_schedule(sched(kind="cosine"), 2.0, 10, 100)
    np.testing.assert_allclose([s(0), s(50), s(100)], [2.0, 1.0, 0.0], atol=1e-6)


def test_warmup_ramps_linearly():
    s = make_schedule(sched(kind="constant", warmup=10), 1.0, 10, 100)
    np.testing.assert_allclose([s(0), s(5), s(10), s(50)], [0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_sgd_with_coupled_weight_decay_matches_hand_step():
    import jax.numpy as jnp
    cfg = ml_collections.ConfigDict(dict(base_config().optimizer))
    cfg.update(name="sgd", weight_decay=0.5)
    opt = make_optimizer(cfg, 0.1)
    p = jnp.array([2.0])
    u, _ = opt.update(jnp.array([1.0]), opt.init(p), p)
    np.testing.assert_allclose(u, [-0.1 * (1.0 + 0.5 * 2.0)])


def test_unknown_optimizer_and_schedule_names_list_choices():
    cfg = base_config().optimizer
    cfg.name = "adagradx"
    with pytest.raises(ConfigError, match="sgd, momentum, adam, adamw"):
        make_optimizer(cfg, 0.1)
    with pytest.raises(ConfigError, match="constant, piecewise, cosine"):
        make_schedule(sched(kind="linear"), 1.0, 1, 1)
