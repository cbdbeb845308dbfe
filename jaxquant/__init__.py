"""jaxquant: quantized neural networks in JAX/Flax.

`import jaxquant as jq` gives the public pieces: quantizers, methods and optax
transforms, usable on any params pytree.
"""
from jaxquant.data import DataError, Dataset, load as load_dataset  # noqa: F401
from jaxquant.export import summary_table  # noqa: F401
from jaxquant.masks import quant_mask  # noqa: F401
from jaxquant.methods.base import Context, Method  # noqa: F401
from jaxquant.methods.baselines import binary_connect, bwn, clip_latents, dorefa, ste  # noqa: F401

__version__ = "0.1.0"
