"""CLI: convert a torchvision checkpoint for `config.init_checkpoint` (see `jaxquant.pretrained`).

    python -m jaxquant.convert --from resnet18.pth --model resnet18 --out runs/torchvision_resnet18

User errors (missing file, wrong keys or shapes) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import sys

from jaxquant.errors import UserError
from jaxquant.pretrained import MODELS, convert


def main(argv: list[str] | None = None) -> int:
    """CLI: --from FILE --model NAME --out DIR; user errors print one line and exit 2."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxquant.convert",
        description="Convert a torchvision state_dict (.pth / .safetensors) into a jaxquant "
                    "checkpoint usable as config.init_checkpoint.")
    parser.add_argument("--from", dest="source", required=True,
                        help="PyTorch state_dict: .pth/.pt (needs torch) or .safetensors")
    parser.add_argument("--model", required=True, choices=list(MODELS))
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    try:
        out = convert(args.source, args.model, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = MODELS[args.model]
    model_flags = " ".join(f"--config.model.{k}={v}" for k, v in cfg.items())
    print(f"wrote {out}: use --config.init_checkpoint={out} with {model_flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
