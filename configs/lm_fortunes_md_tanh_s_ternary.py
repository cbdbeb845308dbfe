"""MD-tanh-S ternary byte-level transformer LM on fortunes: lm_fortunes_fp.py with every attention
and MLP projection kernel on the levels {-1, 0, +1} (Ajanthan et al., AISTATS'21).

The kernel K is the latent y (in units of the levels: `config.model.weight_scale='learned'`
initialises it U(-1, 1) and multiplies each projection's output by a learned full-precision
scalar, see models/transformer.py); the forward pass uses the shifted tanh
1/2 [tanh(beta_t (y + 1/2)) + tanh(beta_t (y - 1/2))] with an identity backward, evaluation
and export round y to -1 / 0 / +1 at -1/2, +1/2 (2 bits per weight, packed). The annealing
beta_t = bts^ceil(t / bti) is the papers' CIFAR schedule scaled to this 300-step budget the
way `python -m jaxquant.compare` scales it (preset md_tanh_s_ternary: 100 increases of beta
reaching 1e4 at the last step: bti = 3, bts = 1e4^(1/100) = 1.09648); the paper's CIFAR-10 runs
use bts 1.02 every 200 of 100k steps. Same data, model, optimizer and budget as the others.

Measured (seeds 0, 1, 2; the md_tanh_s_ternary rows of the comparison run in
lm_fortunes_fp.py's docstring, the same config): validation 3.790 ± 0.029, test
3.839 ± 0.030 bits per byte (FP: 3.771 ± 0.021, 3.821 ± 0.020), next-byte test accuracy
25.90 ± 0.25%; export 175,808 bytes vs 544,304 in float32 (the kernels at 2 bits, the
full-precision embeddings and head dominate at this width).
"""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "lm_fortunes_fp.py"))["get_config"]()
    c.method = dict(name="md_tanh_s", levels=3, bts=1.09648, bti=3, beta_max=1e35)
    return c
