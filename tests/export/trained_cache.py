"""Where the suite keeps what it trains once: pytest's cache folder, kept between runs (a
fresh checkout, as in CI, trains once per session), or a session temp folder when the cache
plugin is off (``-p no:cacheprovider``)."""

from __future__ import annotations

from pathlib import Path

import pytest


def cache_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 name: str) -> Path:
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    return Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
