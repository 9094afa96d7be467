"""The project as strangers meet it: license, citation, version, CI workflow, and how a chapter is added."""

import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

import medsymmflow
from medsymmflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_has_one_home_that_the_cli_the_build_and_the_changelog_agree_with(capsys):
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "medsymmflow.__version__" }' in pyproject
    try:
        main(["--version"])
    except SystemExit as exit_info:
        assert exit_info.code == 0
    assert capsys.readouterr().out.strip() == f"medsymmflow {medsymmflow.__version__}"
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert released and released[0] == medsymmflow.__version__
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == medsymmflow.__version__


def test_license_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert "arXiv:2507.19098" in str(citation["preferred-citation"]["identifiers"])
    titles = [r["title"] for r in citation["references"]]
    assert any(t.startswith("Symmetrical Flow Matching") for t in titles) and any(
        t.startswith("MedMNIST v2") for t in titles
    )
    assert "CITATION.cff" in (ROOT / "README.md").read_text()


def test_the_public_ci_workflow_is_a_thin_call_of_make_test():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert any(step.get("run", "").strip() == "make test" for step in steps)
    assert workflow["jobs"]["test"]["env"]["MEDSYMMFLOW_REQUIRE_REAL_DATA"] == "1"
    assert any("actions/cache" in step.get("uses", "") for step in steps)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_wheel_carries_the_license(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "medsymmflow", source / "medsymmflow", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "deprecat" not in (build.stdout + build.stderr).lower()
    wheel = next(tmp_path.glob("medsymmflow-*.whl"))
    assert wheel.name.startswith(f"medsymmflow-{medsymmflow.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"medsymmflow-{medsymmflow.__version__}.dist-info/METADATA").decode()
        assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
        assert any(name.endswith("licenses/LICENSE") for name in archive.namelist())


def _stub_chapter(path: Path) -> None:
    """A chapter as CONTRIBUTING.md describes it: title, setup cell, parameters cell, an inline == library assert (three code cells)."""
    cells = [
        nbformat.v4.new_markdown_cell("# 09 · A stub chapter\n\nStory, goals, prerequisites, time on CPU / GPU."),
        nbformat.v4.new_code_cell(
            "import torch\nfrom medsymmflow import config\nfrom medsymmflow.data import masks\n\n"
            "profile = config.profile()\ndevice = config.get_device()"
        ),
        nbformat.v4.new_code_cell("n_classes = profile.pick(fast=3, full=5)", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "inline = 7.5 * torch.linspace(-1, 1, n_classes)[:, None]\n"
            "assert torch.allclose(inline, masks.class_colours(n_classes, 'gray'))"
        ),
    ]
    notebook = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(notebook, path)


def test_a_new_chapter_is_picked_up_by_the_course_runner_and_nbval(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _stub_chapter(folder / "09_stub_chapter.ipynb")
    assert main(["course", "--folder", str(folder), "--out", str(tmp_path / "out"), "--profile", "fast"]) == 0
    assert "09_stub_chapter.ipynb" in capsys.readouterr().out
    assert (tmp_path / "out" / "fast" / "09_stub_chapter.html").exists()
    nbval = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-current-env",
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert nbval.returncode == 0 and "3 passed" in nbval.stdout, nbval.stdout[-2000:]


def test_a_kernel_idle_while_its_cell_waits_fails_fast_as_stalled(tmp_path, monkeypatch, capsys):
    """A cell that leaves the kernel idle (as a lost reply would) is stopped by the stall watch, not the cell timeout."""
    from medsymmflow import course

    monkeypatch.setattr(course.StallWatch, "POLL_SECONDS", 0.5)
    monkeypatch.setattr(course.SlicedReplies, "SLICE_SECONDS", 0.5)  # the slices end; the wait goes on
    notebook = tmp_path / "01_idle.ipynb"
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("import time\ntime.sleep(600)")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebook)
    start = time.perf_counter()
    run = course.run_notebook(notebook, tmp_path / "out", timeout=600, stall_seconds=3)
    assert time.perf_counter() - start < 60
    assert not run.ok and run.error.startswith("cell 1: stalled: the kernel sat idle for 3 s") and run.html.exists()
    assert run.stalled and run.late_replies == 0
    # the course runner tries a stalled notebook once more, then reports it as failed
    assert main(["course", str(notebook), "--out", str(tmp_path / "c"), "--stall-timeout", "3"]) == 1
    out = capsys.readouterr().out
    assert "running it once more" in out and "0 ok, 1 failed" in out


def test_sliced_replies_keep_waiting_to_the_callers_timeout_and_record_a_late_reply():
    """Each poll is capped at a slice; the wait lasts the caller's timeout; a reply sent long ago is recorded late."""
    import asyncio
    from datetime import datetime, timedelta, timezone
    from queue import Empty
    from types import SimpleNamespace

    from medsymmflow.course import SlicedReplies

    timeouts = []
    ready = []  # the messages waiting in the socket

    async def get_msg(timeout=None):
        timeouts.append(timeout)
        if ready:
            return ready.pop()
        await asyncio.sleep(timeout)
        raise Empty

    sliced = SlicedReplies(SimpleNamespace(cell=21))
    sliced.SLICE_SECONDS = 0.05
    wait = sliced.sliced(get_msg)
    start = time.monotonic()
    with pytest.raises(Empty):  # nothing arrives: Empty after the caller's 0.3 s, not after the first slice
        asyncio.run(wait(timeout=0.3))
    assert 0.3 <= time.monotonic() - start < 5 and len(timeouts) >= 2 and max(timeouts) <= 0.05
    sent = datetime.now(timezone.utc) - timedelta(seconds=4)  # the kernel's clock: sent 4 s ago
    ready.append({"msg_type": "execute_reply", "header": {"date": sent}, "parent_header": {"msg_id": "m"}})
    reply = asyncio.run(asyncio.wait_for(wait(timeout=None), 5))
    assert reply["msg_type"] == "execute_reply"
    assert len(sliced.late) == 1 and sliced.late[0][0] == 21 and 4 <= sliced.late[0][1] < 10
    ready.append({"msg_type": "execute_reply", "header": {"date": datetime.now(timezone.utc)}, "parent_header": {}})
    asyncio.run(asyncio.wait_for(wait(timeout=None), 5))
    assert len(sliced.late) == 1  # a reply on time is not late
