"""The run report as a reader sees it: every image present, decodable and shown by a browser.

The browser check renders ``report.html`` in headless Chromium (Debian's ``chromium``) and counts
the images that did not load; it is skipped, saying why, where Chromium is not installed.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepshrink.recipe import run_recipe

RECIPE = """\
version: 1
name: browser
seed: 0
latency: true
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 256, test_limit: 96}
stages:
  - train: {epochs: 2, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.7}
  - quantize: {method: kmeans, bits: 4}
  - encode: {file: digits.dsz}
"""

PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    (folder / "recipe.yaml").write_text(RECIPE)
    run_recipe(folder / "recipe.yaml", folder / "run", progress=False)
    return folder / "run"


def test_markdown_report_links_only_to_plots_that_exist(run: Path) -> None:
    text = (run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {Path(link).name for link in links} == {"stages.png", "layers.png", "latency.png"}
    for link in links:
        assert (run / link).read_bytes().startswith(PNG), link
    assert "## Delivered file: digits.dsz" in text and "| bits/weight |" in text


def test_html_report_embeds_every_plot_as_a_png_and_links_nothing_else(run: Path) -> None:
    page = (run / "report.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 3
    for source in sources:
        kind, _, data = source.partition(",")
        assert kind == "data:image/png;base64"
        assert base64.b64decode(data).startswith(PNG)
    assert not re.findall(r'(?:href|src)="(?!data:)', page)  # self-contained: nothing to break


PROBE = (
    "<script>window.addEventListener('load', () => {const images = [...document.images];"
    "document.body.dataset.images = images.length;"
    "document.body.dataset.broken = images.filter(i => !i.complete || !i.naturalWidth).length;"
    "});</script>"
)


NO_BROWSER = "Chromium is not installed (Debian: apt install chromium); the HTML checks ran"


@pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)
def test_chromium_renders_every_image_of_the_report(run: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-images="(\d+)" data-broken="(\d+)"', dom)
    assert found, dom[:500]
    assert (int(found[1]), int(found[2])) == (3, 0)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,900",
                    (run / "report.html").as_uri()], capture_output=True, timeout=120,
                   check=True)  # fmt: skip
    assert shot.read_bytes().startswith(PNG)
