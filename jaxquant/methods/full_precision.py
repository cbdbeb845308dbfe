"""The full-precision reference method `fp`: latent = params, no quantization."""
from jaxquant.methods.base import Context, Method, identity_method

DEFAULTS = {"fp": {}}  # `fp` reads no config.method key


def from_config(name: str, ctx: Context) -> Method:
    del name
    return identity_method(ctx.optimizer)
