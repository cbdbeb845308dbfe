"""The experiment config schema: `base_config()` holds every field with its default.

Config files in `configs/` start from `base_config()` and change only what
differs (the Flax examples' `get_config()` convention). Because every field
exists here, a misspelt override is caught before any compute.
"""
from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Defaults: full-precision MLP on the embedded digits data with Adam."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_checkpoint = ""  # workdir (or checkpoint dir) of a previous run to warm-start from

    c.dataset = ml_collections.ConfigDict(dict(
        name="digits",
        data_dir="",      # '' = $JAXQUANT_DATA_DIR or the source's default location
        validation=0,     # examples carved from the end of train as a validation split
        augment="",       # '' = the dataset's default; 'none' | 'crop_flip' | 'resized_crop_flip'
        normalization="",  # '' = the dataset's own mean/std; 'imagenet' | 'cifar': that published pair
        image_size=224,   # imagenet2012: crop size (test: resize to image_size / 0.875, center crop)
    ))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp",
        affine_bn=True,
        act_bits=0,       # DoReFa activation bits at quantized layer inputs; 0 = off
    ))
    # Method hyperparameters; each method reads the fields it needs.
    c.method = ml_collections.ConfigDict(dict(name="fp"))
    c.quant = ml_collections.ConfigDict(dict(
        include=(".*kernel",),  # regexes (re.fullmatch) on '/'-joined param paths
        exclude=(),
        # layers kept at 32 bits: 'a/conv1,b/shortcut', or 'top:k:<method_state.json or
        # workdir>' = the k layers a layer-wise PD-QAT run ranked highest (largest dual)
        full_precision_layers="",
    ))
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adam",      # sgd | momentum | adam | adamw
        lr=1e-3,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,  # coupled L2 for sgd/momentum/adam, decoupled for adamw
        b1=0.9,
        b2=0.999,
        eps=1e-8,
    ))
    c.schedule = ml_collections.ConfigDict(dict(
        kind="constant",  # constant | piecewise | cosine
        unit="step",      # boundaries/every counted in 'step' or 'epoch'
        boundaries=(),    # piecewise: multiply lr by `factor` at each boundary
        every=0,          # piecewise: or multiply by `factor` every `every` units
        factor=0.1,
        warmup=0,         # linear warm-up, in `unit`s
    ))
    c.train = ml_collections.ConfigDict(dict(
        batch_size=128,
        epochs=10,        # training length: `steps` if > 0, else `epochs`
        steps=0,
        eval_every_steps=0,        # 0 = once per epoch
        eval_batch_size=1000,
        log_every_steps=50,
        checkpoint_every_steps=0,  # 0 = at each evaluation
        keep_checkpoints=2,
        select_best=False,         # report test accuracy at the best validation step
        on_nonfinite="stop",       # non-finite loss/grads/latents: 'stop' (with a report) | 'skip' the step
    ))
    return c
