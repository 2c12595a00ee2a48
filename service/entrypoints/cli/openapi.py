"""`refracture openapi`: write the OpenAPI document."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.entrypoints.api.openapi import openapi_document

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--out."""
    parser.add_argument("--out")


def run(args: argparse.Namespace) -> int:
    """Write the OpenAPI document to --out, or to stdout."""
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
