"""Post-training quantization: L-DNQ (Chen et al., AAAI'19), layer-wise from limited data.

`ldnq(model, params, batch_stats, images, mask, ...)` maps a trained Flax model's
params to quantized ones; `jaxquant.ptq.runner.run` is its CLI runner
(`python -m jaxquant.main --config configs/ldnq_digits.py --workdir runs/x`).
"""
from jaxquant.ptq.ldnq import (AdmmResult, LayerReport, LdnqResult, Settings, admm,  # noqa: F401
                               default_config, hessian, kernel_matrix, layer_rows, ldnq,
                               matrix_kernel, objective, project)
