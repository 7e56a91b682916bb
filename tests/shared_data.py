"""Where the tests find the real data: test code only, never the product.

`../shared/data` beside the checkout (CamVid, the dash-cam clip), or
$SEGEDGE_SHARED_DATA.  Product code never looks for it; tests pass it
explicitly (`--verify-images`, `segbench --data`, `camvid_root(data)`).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = "SEGEDGE_SHARED_DATA"


def shared_data_root() -> Path | None:
    """$SEGEDGE_SHARED_DATA when set, else REPO/../shared/data; None when it holds no data."""
    env = os.environ.get(ENV)
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if (root / "camvid").is_dir() or (root / "video").is_dir():
        return root.resolve()
    return None
