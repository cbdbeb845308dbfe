"""ProxQuant's LSTM baseline: alternating multi-bit quantization trained with the straight-through
gradient method (Xu et al., ICLR'18), byte-level LSTM LM on fortunes.

lstm_fortunes_proxquant.py with projection_mode='lazy' (ProxQuant's "lazy projection", its
eq. 3): the forward pass runs at q_alt(theta), the gradient there is applied to theta as it is
(identity STE), theta is clipped to [-1, 1], and the same freeze hard-sets W_ih, W_hh to
q_alt(theta) at the same step; no prox. `--config.method.bits=1|2|3`.
Paper vs this config: as lstm_fortunes_proxquant.py. The paper's baseline numbers are the
alternating quantization of Xu et al. (their training: the STE with their quantizer applied
in every forward pass); here both methods share the optimizer, schedule, budget and freeze.
Measured (the comparison command of lstm_fortunes_proxquant.py, 3 seeds): test bits per byte
1/2/3 bits 3.747 ± 0.006 / 3.703 ± 0.013 / 3.690 ± 0.023, ahead of ProxQuant's 3.944 / 3.846
/ 3.764 at this 300-step budget (bench/results/compare_lstm_fortunes.md).
"""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "lstm_fortunes_proxquant.py"))["get_config"]()
    c.method.projection_mode = "lazy"
    return c
