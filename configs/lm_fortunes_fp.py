"""Full-precision byte-level transformer LM on Debian's fortunes corpus: the base of the LM comparison.

A 2-layer, 64-wide, 4-head pre-LN decoder over windows of 64 bytes (`models/transformer.py`,
`data/text.py`: 90/5/5 split by position of every file; training draws random windows on the
device, validation and test score fixed windows). Bits per byte = test_loss / ln 2
(test_loss: mean next-byte cross-entropy in nats, in metrics.jsonl, result.json's
final_test_loss / final_val_loss); test_accuracy is next-byte accuracy. The quant rules name
the attention and MLP projections (what the quantized LM configs and the comparison's
methods quantize; the full-precision method ignores them). `weight_scale='learned'`: every
projection is y = s (x K) with a learned scalar s (init sqrt(3 / fan_in)) and K in units of
the levels (init U(-1, 1)), the scale the unscaled {-1, 0, 1} methods need; every method of
the comparison, FP included, has this same model. Sized so that 6 methods x 3 seeds fit
~22 minutes of a loaded 2-core CPU: a tiny budget (300 steps, a quarter of one pass over
the corpus). Needs `apt-get install fortunes`.

Measured (seeds 0, 1, 2, 300 steps, shared 2-core CPU):
`python -m jaxquant.compare --config configs/lm_fortunes_fp.py --seeds 3 --workdir /tmp/lmf/cmp
--methods fp,bitnet,md_tanh_s_ternary,pmf_ternary,proxquant_ternary_lm,bc` -> fp: validation
3.771 ± 0.021, test 3.821 ± 0.020 bits per byte, next-byte test accuracy 25.93 ± 0.13%
(bench/results/compare_lm_fortunes.md: the other methods). This budget only gets past byte
frequencies (4.82 bits per byte for a byte unigram); it ranks first steps, not converged models.
"""
from jaxquant.config import base_config
from jaxquant.models.transformer import QUANT_INCLUDE


def get_config():
    c = base_config()
    c.dataset.update(name="fortunes", seq_len=64)
    c.model = dict(name="transformer", layers=2, width=64, heads=4, seq_len=64, mlp_ratio=4,
                   weight_scale="learned")
    c.quant.update(include=list(QUANT_INCLUDE))
    c.optimizer.update(name="adam", lr=5e-3)
    c.schedule.update(kind="cosine", warmup=20)
    c.train.update(batch_size=32, steps=300, eval_every_steps=150, log_every_steps=25,
                   eval_batch_size=256)
    return c
