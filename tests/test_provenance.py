"""Provenance: the dict every results file carries, and the one header line every report prints from it."""

from medsymmflow.provenance import COMMIT_ENV, provenance, provenance_line


def test_a_given_commit_is_used_and_named_as_given(monkeypatch):
    monkeypatch.setenv(COMMIT_ENV, "abc1234")
    p = provenance()
    assert p["commit"] == "abc1234" and p["commit_source"] == f"${COMMIT_ENV}"
    assert p["uncommitted_changes"] is None  # a copy without git cannot say
    assert {"medsymmflow", "torch", "diffusers", "accelerate", "python", "device", "date"} <= set(p)


def test_the_header_line_flags_a_dirty_tree_and_only_then():
    p = {
        "device": "cpu (x86_64, 2 threads)",
        "commit": "c17a939",
        "medsymmflow": "0.1.0",
        "torch": "2.14.1",
        "diffusers": "0.42.1",
        "uncommitted_changes": False,
    }
    clean = "Device: cpu (x86_64, 2 threads). Commit c17a939, medsymmflow 0.1.0, torch 2.14.1, diffusers 0.42.1."
    assert provenance_line(p) == clean
    assert provenance_line({**p, "uncommitted_changes": True}) == clean.replace(
        "c17a939,", "c17a939 + uncommitted changes,"
    )
    assert provenance_line({**p, "uncommitted_changes": None}) == clean
