import jax.numpy as jnp
import pytest

from jaxquant.masks import MaskError, param_paths, quant_mask

PARAMS = {
    "stem": {"kernel": jnp.ones((3, 3, 1, 4))},
    "stage1_block0": {"conv1": {"kernel": jnp.ones((3, 3, 4, 4))},
                      "shortcut": {"kernel": jnp.ones((1, 1, 4, 4))},
                      "bn1": {"scale": jnp.ones(4), "bias": jnp.ones(4)}},
    "head": {"kernel": jnp.ones((4, 10)), "bias": jnp.ones(10)},
}


def test_paths_are_slash_joined_and_sorted_like_the_pytree():
    assert "stage1_block0/conv1/kernel" in param_paths(PARAMS)
    assert "head/bias" in param_paths(PARAMS)


def test_include_then_exclude_selects_block_kernels_only():
    m = quant_mask(PARAMS, include=[".*kernel"], exclude=["stem/.*", "head/.*", ".*shortcut.*"])
    assert m["stage1_block0"]["conv1"]["kernel"] is True
    assert m["stage1_block0"]["shortcut"]["kernel"] is False
    assert m["stem"]["kernel"] is False and m["head"]["kernel"] is False
    assert m["stage1_block0"]["bn1"]["scale"] is False


def test_rules_match_whole_path_not_substring():
    m = quant_mask(PARAMS, include=["kernel", ".*kernel"], strict=False)
    assert m["head"]["kernel"] is True
    with pytest.raises(MaskError, match="'kernel' matches no parameter"):
        quant_mask(PARAMS, include=["kernel"])


def test_rule_matching_nothing_names_the_rule_and_lists_paths():
    with pytest.raises(MaskError) as e:
        quant_mask(PARAMS, include=[".*kernel"], exclude=["fc/.*"])
    assert "fc/.*" in str(e.value) and "head/kernel" in str(e.value)


def test_invalid_regex_is_a_clear_error():
    with pytest.raises(MaskError, match="not a valid regex"):
        quant_mask(PARAMS, include=["(unclosed"])
