#!/usr/bin/env python
"""Build the paper's fixed Adobe composite sets; same options as ``python -m bgmatting.compose --help``.

Examples (see data/README.md)::

    python scripts/compose_adobe.py --preset train --fg-dir "$ADOBE/Training_set/Adobe-licensed images/fg" \
        "$ADOBE/Training_set/Other/fg" --alpha-dir "$ADOBE/Training_set/Adobe-licensed images/alpha" \
        "$ADOBE/Training_set/Other/alpha" --fg-list data/adobe/train_fg_names.txt --bg-dir data/coco/train2017 \
        --out data/composites/adobe_train
"""
from __future__ import annotations

import sys

from bgmatting.compose import main

if __name__ == "__main__":
    sys.exit(main())
