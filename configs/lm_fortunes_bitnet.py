"""BitNet b1.58 byte-level transformer LM on fortunes: lm_fortunes_fp.py with ternary projections.

Every attention (q, k, v, o) and MLP (up, down) kernel is absmean-ternary, clip(round(W / s),
-1, 1) s with s = mean|W| + 1e-5 per tensor, trained with the straight-through estimator
(Ma et al. 2024), and the inputs of those projections are per-token absmax 8-bit
(`config.model.absmax_act_bits=8`); embeddings, LayerNorms and the head stay full precision.
Same data, model, optimizer and budget as the full-precision run. Bits per byte = test_loss / ln 2.

Measured (one seed, 150 steps, 2-core CPU shared with other jobs: 704 s):
`python -m jaxquant.main --config configs/lm_fortunes_bitnet.py --workdir /tmp/lmruns/bitnet --overwrite`
-> test_loss 2.636 nats = 3.80 bits per byte, next-byte test accuracy 26.2%; projections
2-bit in the summary (432,272 bytes vs 1,906,688 in float32, 4.4x). At this budget FP and
BitNet are indistinguishable (FP: 3.85); seeds and longer runs are issue 22's comparison.
"""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "lm_fortunes_fp.py"))["get_config"]()
    c.model.absmax_act_bits = 8
    c.method = dict(name="bitnet", weights="ternary")
    return c
