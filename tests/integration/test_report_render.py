"""The backtest report's page renders its charts in a real browser (headless Chromium).

The page is the one `quantum backtest` writes, from a hand-made run
(tests/unit/report_world.py); Chromium takes a screenshot of it from disk. The charts are
the only places on the page in their colours (the equity line, the exits bars), so the
test looks for those colours in the screenshot, and compares with the same page whose
images are blanked: the charts must make most of what is drawn. Needs Debian's
`chromium` (apt-get install -y --no-install-recommends chromium); skips without it.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from quantum.app.backtest.page import CHARTS, write_html
from quantum.app.backtest.report import analyse
from tests.unit import report_world as w

CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"
EQUITY_BLUE = (0x1F, 0x5F, 0xA8)
EXITS_ORANGE = (0xE6, 0x7E, 0x22)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (apt-get install -y --no-install-recommends chromium)",
)


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    """The page at 1280 x 2000 as an (h, w, 3) uint8 array."""
    import matplotlib.image

    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            "--window-size=1280,2000",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.read_bytes().startswith(PNG)
    image = matplotlib.image.imread(out)  # floats in [0, 1], RGB or RGBA
    return (image[..., :3] * 255).round().astype(np.uint8)


def near(image: np.ndarray, rgb: tuple[int, int, int], tol: int = 24) -> int:
    """Pixels within `tol` of `rgb` in every channel."""
    return int((np.abs(image.astype(int) - np.array(rgb)) <= tol).all(axis=-1).sum())


def ink(image: np.ndarray) -> float:
    """Fraction of pixels that are not (nearly) white."""
    return float((image < 235).any(axis=-1).mean())


def test_report_page_renders_its_charts(tmp_path: Path) -> None:
    analysis = analyse(w.world(), feed=w.FEED, initial_balance=w.INITIAL)
    page = write_html(analysis, tmp_path, config=w.config())
    html = page.read_text(encoding="utf-8")

    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(CHARTS)
    for data in images:
        png = base64.b64decode(data, validate=True)
        assert png.startswith(PNG) and len(png) > 1000

    shot = screenshot(page, tmp_path / "shot.png", tmp_path / "profile")
    assert shot.shape[:2] == (2000, 1280)
    assert shot.std() > 10  # not a blank page
    assert near(shot, EQUITY_BLUE) > 300  # the equity line is drawn
    assert near(shot, EXITS_ORANGE) > 300  # the exits bars are drawn

    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html), encoding="utf-8")
    without = screenshot(blank, tmp_path / "blank.png", tmp_path / "profile2")
    assert near(without, EQUITY_BLUE) < 20 and near(without, EXITS_ORANGE) < 20
    assert ink(shot) > ink(without) + 0.05  # the charts are most of the page's ink
