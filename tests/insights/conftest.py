"""A real headless Chromium that opens HTML reports and says which images it could not render."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# Runs in the page after load: every <img> must have decoded (complete, with a natural width).
_PROBE = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.alt || i.src.slice(0, 40));
  const sizes = images.map(i => [i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute('data-probe', JSON.stringify({count: images.length, broken, sizes,
    title: document.title, headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent)}));
});
</script>"""


def find_chromium() -> str:
    """``$CHROMIUM``, else chromium / chromium-browser / google-chrome on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    pytest.fail(
        "no Chromium found: `make test` installs it (apt-get install chromium), or set $CHROMIUM",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def render_in_chromium(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], dict]:
    """Open an HTML file in headless Chromium; return what the page saw (images, title, sections)."""
    binary = find_chromium()
    work = tmp_path_factory.mktemp("chromium")

    def render(page: Path) -> dict:
        probe = work / f"probe-{page.stem}.html"
        text = page.read_text(encoding="utf-8")
        probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
        profile = work / "profile"
        result = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        match = re.search(r'data-probe="([^"]*)"', result.stdout)
        assert match, f"Chromium rendered nothing (exit {result.returncode}): {result.stderr[-2000:]}"
        return json.loads(html.unescape(match.group(1)))

    return render
