"""`refracture model-card`: write the model card from the model's own parameter table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.domain.model_card import render_model_card

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--out."""
    parser.add_argument("--out")


def run(args: argparse.Namespace) -> int:
    """Write the model card to --out, or to stdout."""
    text = render_model_card()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
