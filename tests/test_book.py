"""The rendered course: the runner's stamp on executed copies, the browser check's findings, and
the concept figures of ``viz``."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from medsymmflow import viz  # noqa: E402
from medsymmflow.course import execution_stamp, run_notebook  # noqa: E402
from medsymmflow.data.masks import centre_separation, class_colours  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _check_book():
    spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.imsave(path, np.zeros((4, 4, 3)))


def _page(path: Path, body: str) -> None:
    path.write_text(f"<html><body><p>Executed by medsymmflow course</p>{body}</body></html>", encoding="utf-8")


def test_executed_copy_is_stamped_with_profile_and_outcome(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSYMMFLOW_PROFILE", "fast")
    notebook = tmp_path / "07_stamp.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell("print(6 * 7)")],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        notebook,
    )
    run = run_notebook(notebook, tmp_path / "out", timeout=120)
    executed = nbformat.read(run.executed, as_version=4)
    stamp = executed.cells[0]
    assert run.ok and stamp.cell_type == "markdown"
    assert "profile **fast**" in stamp.source and "every cell ran" in stamp.source
    assert executed.cells[1].outputs[0]["text"] == "42\n"
    assert "**stopped with an error** (cell 3: ValueError: x)" in execution_stamp(1.0, "cell 3: ValueError: x")


def test_check_finds_missing_and_broken_images(tmp_path):
    book = _check_book()
    _png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert book.image_problem(tmp_path / "page.html", "ok.png") is None
    assert "missing image" in book.image_problem(tmp_path / "page.html", "gone.png")
    assert "does not decode" in book.image_problem(tmp_path / "page.html", "broken.png")
    assert book.image_problem(tmp_path / "page.html", "data:image/svg+xml,%3Csvg%3E%3C/svg%3E") is None


def test_check_finds_broken_links_and_missing_anchors(tmp_path):
    book = _check_book()
    _page(tmp_path / "other.html", '<h2 id="there">x</h2>')
    html = '<a href="other.html#there">a</a><a href="other.html#nowhere">b</a><a href="gone.html">c</a><a href="#top">d</a><a href="#bottom">f</a><a href="https://x.org">e</a>'
    dom = book.parse(f'<div id="top">{html}</div>')
    problems = book.link_problems(tmp_path / "page.html", dom, tmp_path, lambda p: book.parse(p.read_text()).ids)
    assert problems == [
        "link other.html#nowhere: no id 'nowhere' in other.html",
        "broken link gone.html",
        "link #bottom: no id 'bottom' in this page",
    ]


def test_readme_must_link_every_chapter_to_a_built_page(tmp_path):
    book = _check_book()
    site = tmp_path / "build" / "book"
    site.mkdir(parents=True)
    _page(site / "01_a.html", "<img src='x.png'>")
    readme = tmp_path / "README.md"
    readme.write_text("| [Chapter 1](build/book/01_a.html) | [2](build/book/02_b.html#top) | [paper](https://x.org) |")
    assert book.readme_problems(readme, site, ["01_a"]) == ["README links to 02_b.html, which was not built"]
    assert book.readme_problems(readme, site, ["01_a", "03_c"]) == [
        "README links to 02_b.html, which was not built",
        "README has no link to the rendered page of 03_c",
    ]


def test_dom_counts_traceback_outputs():
    dom = _check_book().parse('<div class="output traceback highlight-ipythontb">Error</div><img src="a.png">')
    assert dom.tracebacks == 1 and dom.images == ["a.png"]


@pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")), reason="no browser"
)
def test_browser_check_passes_a_good_site_and_fails_a_broken_one(tmp_path, capsys):
    book = _check_book()
    _png(tmp_path / "figure.png")
    _page(tmp_path / "01_good.html", '<img src="figure.png"><a href="02_bad.html">next</a>')
    _page(tmp_path / "02_bad.html", '<div class="output traceback">ZeroDivisionError</div>')
    assert book.check(tmp_path, ["01_good"], None, []) == 0
    assert book.check(tmp_path, ["01_good", "02_bad"], tmp_path / "shots", ["01_good"]) == 1
    errors = capsys.readouterr().err
    assert "02_bad: no figure" in errors and "02_bad: 1 error output(s)" in errors and "01_good" not in errors
    assert (tmp_path / "shots" / "01_good.png").stat().st_size > 0


def test_joint_path_shows_noise_to_image_and_mask_to_noise():
    image = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    mask = class_colours(2)[1][:, None, None].expand(3, 8, 8)
    noise_image, noise_mask = torch.randn(1, 8, 8), torch.randn(3, 8, 8)
    fig = viz.joint_path(image, mask, noise_image, noise_mask, times=(0.0, 1.0), sigma_min=0.0)
    (noise_shown, image_shown), (mask_shown, _) = [
        [ax.get_images()[0].get_array() for ax in row] for row in np.reshape(fig.axes, (2, 2))
    ]
    assert np.allclose(image_shown, viz.to_display(image[None])[0, :, :, 0])  # the image row ends at the image
    assert np.allclose(noise_shown, viz.to_display(noise_image[None])[0, :, :, 0])  # ... and starts at noise
    assert np.allclose(mask_shown, viz.to_display(mask[None])[0])  # the mask row starts at the mask


@pytest.mark.parametrize("mode", ["rgb", "gray", "onehot"])
def test_palette_geometry_reports_the_smallest_distance(mode):
    fig = viz.palette_geometry(5, mode)
    assert f"smallest {centre_separation(5, mode):.2f}" in fig.axes[1].get_title()


def test_selective_loop_names_both_outcomes():
    texts = " ".join(t.get_text() for t in viz.selective_loop().axes[0].texts)
    assert "answer its class" in texts and "refer to a clinician" in texts
