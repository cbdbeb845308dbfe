"""ProxQuant's LSTM baseline: alternating multi-bit quantization trained with the straight-through
gradient method (Xu et al., ICLR'18), byte-level LSTM LM on fortunes.

lstm_fortunes_proxquant.py with projection_mode='lazy' (ProxQuant's "lazy projection", its
eq. 3): the forward pass runs at q_alt(theta), the gradient there is applied to theta as it is
(identity STE), theta is clipped to [-1, 1], and the same freeze hard-sets W_ih, W_hh to
q_alt(theta) at the same step; no prox. `--config.method.bits=1|2|3`.
Paper vs this config: as lstm_fortunes_proxquant.py. The paper's baseline numbers are the
alternating quantization of Xu et al. (their training: the STE with their quantizer applied
in every forward pass); here both methods share the optimizer, schedule, budget and freeze.
"""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "lstm_fortunes_proxquant.py"))["get_config"]()
    c.method.projection_mode = "lazy"
    return c
