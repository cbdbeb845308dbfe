"""BitNet b1.58 byte-level transformer LM on fortunes: lm_fortunes_fp.py with ternary projections.

Every attention (q, k, v, o) and MLP (up, down) kernel is absmean-ternary, clip(round(W / s),
-1, 1) s with s = mean|W| + 1e-5 per tensor, trained with the straight-through estimator
(Ma et al. 2024), and the inputs of those projections are per-token absmax 8-bit
(`config.model.absmax_act_bits=8`); embeddings, LayerNorms and the head stay full precision.
Same data, model, optimizer and budget as the full-precision run, including its learned
per-projection scalar (`weight_scale='learned'`, which the unscaled methods need; with
absmean it is a redundant extra scalar; `--config.model.weight_scale=none` gives the
published recipe exactly). Bits per byte = test_loss / ln 2.

Measured (seed 0, 300 steps, shared 2-core CPU, 76 s):
`python -m jaxquant.main --config configs/lm_fortunes_bitnet.py --workdir /tmp/lmf/bitnet_a8 --overwrite`
-> test_loss 2.6426 nats = 3.812 bits per byte (validation 3.762), next-byte test accuracy
25.92%; export 175,808 bytes vs 544,304 in float32 (3.1x). Without the 8-bit activations
(the comparison's `bitnet` rows, seeds 0-2): test 3.810 ± 0.005 bits per byte; FP 3.821 ± 0.020
(bench/results/compare_lm_fortunes.md). At this tiny budget they are indistinguishable.
"""
import os, runpy  # noqa: E401


def get_config():
    c = runpy.run_path(os.path.join(os.path.dirname(__file__), "lm_fortunes_fp.py"))["get_config"]()
    c.model.absmax_act_bits = 8
    c.method = dict(name="bitnet", weights="ternary")
    return c
