#!/usr/bin/env python
"""Prepare a real capture (video or frame folder + background photo) for the self-supervised stage.

Thin wrapper of ``python -m bgmatting.prepare_real`` (same arguments; ``--help`` lists them).
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    from bgmatting.prepare_real import main
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bgmatting.prepare_real import main

if __name__ == "__main__":
    sys.exit(main())
