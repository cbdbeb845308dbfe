"""Full-precision byte-level transformer LM on Debian's fortunes corpus (issue 22's CPU scale).

A 2-layer, 128-wide, 4-head pre-LN decoder over windows of 128 bytes (`models/transformer.py`,
`data/text.py`: 90/5/5 split by position of every file). Bits per byte = test_loss / ln 2
(test_loss is the mean next-byte cross-entropy in nats, in metrics.jsonl / the log);
test_accuracy is next-byte accuracy. The quant rules name the attention and MLP projections
(what `lm_fortunes_bitnet.py` quantizes; the full-precision method ignores them), so both
runs print the same summary. Needs `apt-get install fortunes`.

Measured (one seed, 150 steps, 2-core CPU shared with other jobs: 710 s):
`python -m jaxquant.main --config configs/lm_fortunes_fp.py --workdir /tmp/lmruns/fp2 --overwrite`
-> test_loss 2.670 nats = 3.85 bits per byte, next-byte test accuracy 25.6%. This budget only
gets past byte frequencies; it is a smoke-scale run, not a result.
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
    c.train.update(batch_size=32, steps=200, eval_every_steps=100, log_every_steps=50,
                   eval_batch_size=256)
    return c
