"""jaxquant: quantized neural networks in JAX/Flax.

`import jaxquant as jq` gives the public pieces: quantizers, methods and optax
transforms, usable on any params pytree.
"""
from jaxquant.pretrained import convert_state_dict, read_state_dict  # noqa: F401
from jaxquant.data import DataError, Dataset, load as load_dataset  # noqa: F401
from jaxquant.export import summary_table  # noqa: F401
from jaxquant.masks import quant_mask  # noqa: F401
from jaxquant.ptq import ldnq  # noqa: F401
from jaxquant.methods.base import Context, Method  # noqa: F401
from jaxquant.methods.baselines import binary_connect, bwn, clip_latents, dorefa, ste  # noqa: F401
from jaxquant.methods.mirror import beta_schedule, gd_tanh, md_softmax, md_softmax_s, md_tanh, md_tanh_s, mirror_step, pmf  # noqa: F401,E501
from jaxquant.methods.metaquant import metaquant  # noqa: F401
from jaxquant.methods.pdqat import dual_ascent, high_precision_weight, pdqat, pdqat_weight  # noqa: F401
from jaxquant.methods.proxquant import (freeze_quantized, homotopy_strength, prox_binary, prox_multibit,  # noqa: F401
                                        prox_quant, prox_ternary, proxquant, reset_state_every)

__version__ = "0.1.0"
