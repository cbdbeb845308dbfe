"""Full-precision byte-level LSTM LM on Debian's fortunes corpus (ProxQuant's LSTM, CPU scale).

Paper (Bai, Wang & Liberty, ICLR'19, its LSTM experiment, after Xu et al., ICLR'18):
a one-layer LSTM language model on word-level Penn Treebank (10k-word vocabulary), 300 hidden
units, the LSTM's weight matrices quantized to 1, 2, 3 bits, test perplexity reported. PTB is
not available offline: `--config.dataset.name=text_file:<ptb.train.txt,...>` takes it where a
user has it (still byte-level here).
This config: bytes of `fortunes` (90/5/5 split by position, `data/text.py`), windows of 64
bytes from a zero state, one LSTM layer of 128 units, embedding 128, Adam 3e-3 cosine, 300
steps of batch 32 -- what fits issue 22's CPU budget (21 runs in < 25 min on a shared
2-core machine). Bits per byte = test_loss / ln 2 (the test split in 64-byte windows). The
quant rules name W_ih and W_hh (`models/lstm.py` QUANT_INCLUDE), what the quantized
configs quantize; the full-precision method ignores them.
Measured (3 seeds, the comparison of lstm_fortunes_proxquant.py): test 3.655 ± 0.047 bits per
byte, next-byte accuracy 31.32 ± 0.65% (bench/results/compare_lstm_fortunes.md).
"""
from jaxquant.config import base_config
from jaxquant.models.lstm import QUANT_INCLUDE


def get_config():
    c = base_config()
    c.dataset.update(name="fortunes", seq_len=64)
    c.model = dict(name="lstm", layers=1, hidden=128, embed=128)
    c.quant.update(include=list(QUANT_INCLUDE))
    c.optimizer.update(name="adam", lr=3e-3)
    c.schedule.update(kind="cosine", warmup=20)
    c.train.update(batch_size=32, steps=300, eval_every_steps=150, log_every_steps=50,
                   eval_batch_size=512)
    return c
