"""jaxquant: quantized neural networks in JAX/Flax.

`import jaxquant as jq` gives the public pieces: quantizers, methods and optax
transforms, usable on any params pytree. They are imported on first use
(PEP 562), so `import jaxquant.methods` loads the methods only, not the data
sources, models or trainer.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute in it)
_EXPORTS = {
    "convert_state_dict": ("jaxquant.pretrained", "convert_state_dict"),
    "read_state_dict": ("jaxquant.pretrained", "read_state_dict"),
    "DataError": ("jaxquant.data", "DataError"),
    "Dataset": ("jaxquant.data", "Dataset"),
    "load_dataset": ("jaxquant.data", "load"),
    "summary_table": ("jaxquant.export", "summary_table"),
    "quant_mask": ("jaxquant.masks", "quant_mask"),
    "ldnq": ("jaxquant.ptq", "ldnq"),
    "Context": ("jaxquant.methods.base", "Context"),
    "Method": ("jaxquant.methods.base", "Method"),
    **{n: ("jaxquant.methods.baselines", n)
       for n in ("binary_connect", "bitnet", "bwn", "clip_latents", "dorefa", "lazy_projection",
                 "ste")},
    **{n: ("jaxquant.methods.mirror", n)
       for n in ("beta_schedule", "gd_tanh", "md_softmax", "md_softmax_s", "md_tanh",
                 "md_tanh_s", "mirror_step", "pmf")},
    "metaquant": ("jaxquant.methods.metaquant", "metaquant"),
    **{n: ("jaxquant.methods.pdqat", n)
       for n in ("dual_ascent", "high_precision_weight", "pdqat", "pdqat_weight")},
    **{n: ("jaxquant.methods.proxquant", n)
       for n in ("freeze_quantized", "homotopy_strength", "prox_binary", "prox_multibit",
                 "prox_quant", "prox_ternary", "proxquant", "reset_state_every")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxquant' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
