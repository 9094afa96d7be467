"""The chapter-times reader: a ``make test`` log in, each chapter's cold and cached seconds out."""

import pytest
from conftest import load_benchmark

LOG = """\
============================= slowest durations ==============================
300.50s call     notebooks/02_symmetric_transport.ipynb::Cell 7
12.25s call     notebooks/00_medmnist_and_semantic_masks.ipynb::Cell 3
3.00s setup    notebooks/00_medmnist_and_semantic_masks.ipynb::Cell 0
0.75s call     notebooks/02_symmetric_transport.ipynb::Cell 1
(12 durations < 0.005s hidden.)
Running 2 notebook(s) in the 'fast' profile -> runs/course/fast
00_medmnist_and_semantic_masks.ipynb                 18.0 s  ok
02_symmetric_transport.ipynb                         61.0 s  stalled; running it once more
02_symmetric_transport.ipynb                         54.2 s  ok
total                                               133.2 s  2 ok, 0 failed
"""


def test_each_chapter_sums_its_cells_cold_and_keeps_the_runners_last_line():
    times = load_benchmark("course_times").parse_log(LOG)
    assert times == {
        "00_medmnist_and_semantic_masks": {"cold": 15.2, "cached": 18.0, "cached_status": "ok"},
        "02_symmetric_transport": {"cold": 301.2, "cached": 54.2, "cached_status": "ok"},
    }


def test_a_log_without_both_passes_is_refused_by_name():
    course_times = load_benchmark("course_times")
    with pytest.raises(ValueError, match="lacks nbval's --durations report"):
        course_times.parse_log(LOG.split("Running")[1])
    with pytest.raises(ValueError, match="lacks the course runner's per-chapter lines"):
        course_times.parse_log(LOG.split("Running")[0])


def test_the_report_states_the_machine_speed_beside_the_times():
    course_times = load_benchmark("course_times")
    chapters = course_times.parse_log(LOG)
    results = {
        "log": "ci.log",
        "chapters": chapters,
        "total_cold": 316.4,
        "total_cached": 72.2,
        "provenance": {"device": "cpu", "commit": "abc1234", "medsymmflow": "0", "torch": "2", "diffusers": "0"},
    }
    assert "Machine speed" not in course_times.markdown(results)
    results["probe"] = {"steps": 30, "s_per_step": [0.7, 0.72, 0.74], "mean": 0.72, "sd": 0.02}
    report = course_times.markdown(results)
    assert "| 02_symmetric_transport | 301 | 54 | no | ok |" in report
    assert "0.720 ± 0.020 s per training step" in report and "3 runs of 30 steps" in report


def test_a_probe_that_would_time_a_validation_is_refused():
    with pytest.raises(ValueError, match="--probe-steps must be 1 to 144"):
        load_benchmark("course_times").probe_speed(150, 3)
