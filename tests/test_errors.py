"""Every bad input and fault a user or a damaged disk can bring, as one table.

Each row runs one command line in-process against a copy of a small trained run, after an
optional setup (damage a file, make a path a file, patch a fault in), and checks the exit
code, a fragment of the one-line error, that no traceback was printed, and that the run's
checkpoints are byte-for-byte unchanged. Behaviour tests below the table cover what an
error must not hide: overwrite protection keeps evaluations, Ctrl-C leaves a resumable run,
--extend continues the learning-rate schedule, --debug shows the traceback.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import tiny_train

from medsymmflow import files
from medsymmflow import train as train_module
from medsymmflow.cli import main

STEPS = 4
TRAIN = tiny_train("{tmp}/no-data", STEPS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = [a.format(tmp=out) for a in TRAIN] + ["--out", str(out / "run")]
    assert main(argv) == 0
    return out / "run"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_config(folder: Path, change) -> None:
    meta = json.loads((folder / "config.json").read_text())
    change(meta)
    (folder / "config.json").write_text(json.dumps(meta))


def _read_only(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "TemporaryFile", refuse)


def _interrupt_after_first_checkpoint(monkeypatch) -> None:
    save = train_module.Trainer._validate_and_save

    def save_then_interrupt(self, loss):
        save(self, loss)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Trainer, "_validate_and_save", save_then_interrupt)


def _course_codec(folder: Path) -> None:
    from medsymmflow.models.autoencoder import train_course_codec

    train_course_codec(torch.zeros(4, 1, 32, 32), folder, steps=1, batch_size=2, progress=False)


def _raise_interrupt(self, loss):
    raise KeyboardInterrupt


def _fault(error: BaseException):
    def setup(run, tmp, monkeypatch):
        def fail(self):
            raise error

        monkeypatch.setattr(train_module.Trainer, "_batch", fail)

    return setup


@dataclass
class Case:
    name: str
    argv: list[str]
    code: int
    message: str
    setup: object = None  # setup(run, tmp, monkeypatch)


def _damage(relative: str, how=_truncate):
    return lambda run, tmp, monkeypatch: how(run / relative)


def _config_change(change):
    return lambda run, tmp, monkeypatch: _edit_config(run / "best", change)


def _file_at(relative: str):
    return lambda run, tmp, monkeypatch: (
        (tmp / relative).parent.mkdir(parents=True, exist_ok=True) or (tmp / relative).write_text("not a folder")
    )


NEW = ["--out", "{tmp}/new"]
RUN = ["--out", "{run}"]
CASES = [
    # usage errors (exit 2)
    Case("train over an existing run", TRAIN + RUN, 2, "already holds a training run (last/, best/); continue it"),
    Case("batch larger than the data", TRAIN + NEW + ["--batch-size", "2000000000"], 2, "exceeds the 546 training"),
    Case("--out is a file", TRAIN + ["--out", "{tmp}/f"], 2, "is a file, not a folder", _file_at("f")),
    Case("--out below a file", TRAIN + ["--out", "{tmp}/f/sub"], 2, "is a file, not a folder", _file_at("f")),
    Case("--data-root is a file", TRAIN[:-1] + ["{tmp}/f"] + NEW, 2, "data root", _file_at("f")),
    Case("negative EMA decay", TRAIN + NEW + ["--ema-decay", "-1"], 2, "ema_decay must lie in [0.0, 0.999999]"),
    Case("image weight above 1", TRAIN + NEW + ["--image-weight", "1.5"], 2, "image_weight must lie in"),
    Case("negative sigma_min", TRAIN + NEW + ["--sigma-min", "-0.1"], 2, "sigma_min must lie in"),
    Case("negative weight decay", TRAIN + NEW + ["--weight-decay", "-1"], 2, "weight_decay must lie in"),
    Case("dropout of 1", TRAIN + NEW + ["--dropout", "1"], 2, r"dropout must lie in [0.0, 0.9], got 1.0"),
    Case("shift past a quarter", TRAIN + NEW + ["--shift", "8"], 2, "shift must be an integer in [0, 7] (a quarter"),
    Case(
        "shifts of a t = 1 share that is not there",
        TRAIN + NEW + ["--shift", "2", "--shift-scope", "classify"],
        2,
        "shift_scope 'classify' shifts the t = 1 share only: set classify_share > 0",
    ),
    Case("zero learning rate", TRAIN + NEW + ["--lr", "0"], 2, "lr must be positive"),
    Case(
        "loss weights beside balanced sampling",
        TRAIN + NEW + ["--class-weighted-loss"],
        2,
        "balanced sampling and class_weighted_loss both correct the class imbalance: set balanced false",
    ),
    Case("zero gray beta", TRAIN + NEW + ["--gray-beta", "0"], 2, "gray_beta must be positive"),
    Case("unknown dataset", ["train", "--dataset", "pneumonia"] + NEW, 2, "Unknown MedMNIST flag 'pneumonia'"),
    Case("multi-label dataset", ["train", "--dataset", "chestmnist", "--allow-synthetic"] + NEW, 2, "multi-label"),
    Case("resume with nothing there", TRAIN + NEW + ["--resume"], 2, "nothing to resume: no checkpoint in"),
    Case(
        "resume with other steps",
        TRAIN[:4] + ["6"] + TRAIN[5:] + RUN + ["--resume"],
        2,
        "steps: 4 in the checkpoint, 6 requested. To train past its steps add --extend",
    ),
    Case("--extend without --resume", TRAIN + NEW + ["--extend"], 2, "--extend continues a saved run"),
    Case("--extend to fewer steps", TRAIN[:4] + ["3"] + TRAIN[5:] + RUN + ["--resume", "--extend"], 2, "must exceed the step the run reached"),
    Case("evaluate a missing folder", ["evaluate", "{tmp}/missing"], 2, "no checkpoint at"),
    Case("evaluate --out is a file", ["evaluate", "{run}/best", "--out", "{tmp}/f"], 2, "is a file", _file_at("f")),
    Case("evaluate zero draws", ["evaluate", "{run}/best", "--n-samples", "0"], 2, "argument --n-samples: must be >= 1, got 0"),
    Case("evaluate an unknown split", ["evaluate", "{run}/best", "--split", "dev"], 2, "invalid choice: 'dev'"),
    Case("evaluate an unknown decoding", ["evaluate", "{run}/best", "--decoding", "vote"], 2, "argument --decoding: invalid choice: 'vote'"),
    Case("generation with a missing classifier", ["evaluate", "{run}/best", "--generation", "--classifier", "{tmp}/missing"], 2, "no checkpoint at"),
    Case("generation with a flow as classifier", ["evaluate", "{run}/best", "--generation", "--classifier", "{run}/best"], 2, "is not a CNN classifier checkpoint"),
    Case("generation at zero NFE", ["evaluate", "{run}/best", "--generation", "--nfes", "0"], 2, "argument --nfes: must be >= 1, got 0"),
    Case("sample a missing class", ["sample", "{run}/best", "--class", "7", "--out", "{tmp}/x.png"], 2, "class 7"),
    Case("sample --out without suffix", ["sample", "{run}/best", "--out", "{tmp}/x"], 2, "must name an image file"),
    Case("sample --out a folder", ["sample", "{run}/best", "--out", "{tmp}"], 2, "must name an image file"),
    Case("reproduce --out is a file", ["reproduce", "--smoke", "--out", "{tmp}/f"], 2, "is a file", _file_at("f")),
    Case("latent model with gray masks", TRAIN + NEW + ["--codec", "{tmp}/codec", "--mask-mode", "gray"], 2, "takes RGB masks"),
    Case("latent size the codec cannot halve", TRAIN + NEW + ["--codec", "{tmp}/codec"], 2, "become 7 x 7 latents, which the 'tiny' UNet cannot halve 2 times; pick an image size that is a multiple of 16", lambda run, tmp, mp: _course_codec(tmp / "codec")),
    Case("course --out is a file", ["course", "--out", "{tmp}/f"], 2, "is a file", _file_at("f")),
    # damaged checkpoints and runtime faults (exit 1)
    Case("truncated EMA weights", ["evaluate", "{run}/best"], 1, "ema.safetensors is damaged", _damage("best/ema.safetensors")),
    Case("missing EMA weights", ["evaluate", "{run}/best"], 1, "ema.safetensors is damaged", _damage("best/ema.safetensors", Path.unlink)),
    Case("config.json not JSON", ["evaluate", "{run}/best"], 1, "config.json is damaged or incomplete (JSONDecodeError", _damage("best/config.json", lambda p: p.write_text("{oops"))),
    Case("config.json unknown field", ["evaluate", "{run}/best"], 1, "does not know: bogus", _config_change(lambda m: m["config"].update(bogus=1))),
    Case("config.json missing key", ["evaluate", "{run}/best"], 1, "missing n_classes", _config_change(lambda m: m.pop("n_classes"))),
    Case("config.json bad value", ["evaluate", "{run}/best"], 1, "preset must be one of", _config_change(lambda m: m["config"].update(preset="huge"))),
    Case("config and weights of two runs", ["evaluate", "{run}/best"], 1, "does not fit the model", _config_change(lambda m: m.update(n_classes=5, image_channels=3))),
    Case("truncated raw weights on resume", TRAIN + RUN + ["--resume"], 1, "model.safetensors is damaged", _damage("last/model.safetensors")),
    Case("truncated training state", TRAIN + RUN + ["--resume"], 1, "training_state.pt is damaged", _damage("last/training_state.pt")),
    Case("tampered training state", TRAIN + RUN + ["--resume"], 1, "start the run again with --overwrite", _damage("last/training_state.pt", lambda p: p.write_bytes(b"\x80\x04K\x01."))),
    Case("missing RNG state", TRAIN + RUN + ["--resume"], 1, "rng_0.pt is damaged", _damage("last/rng_0.pt", Path.unlink)),
    Case("wrong data file", TRAIN[:-1] + ["{tmp}/data"] + NEW, 1, "md5", lambda run, tmp, mp: _file_at("data/breastmnist.npz")(run, tmp, mp)),
    Case("codec folder missing", TRAIN + NEW + ["--codec", "{tmp}/no-codec", "--image-size", "32"], 1, "no AutoencoderKL could be read from the folder"),
    Case("read-only output", TRAIN + NEW, 1, "cannot write to", lambda run, tmp, mp: _read_only(mp)),
    Case("evaluate to read-only", ["evaluate", "{run}/best", "--out", "{tmp}/e"], 1, "Read-only file system", lambda run, tmp, mp: _read_only(mp)),
    Case("learning rate that diverges", TRAIN + NEW + ["--lr", "1e30"], 1, "NaN or infinite: its weights have diverged; training stopped; no checkpoint was saved yet"),
    Case("out of memory", TRAIN + NEW, 1, "out of memory", _fault(torch.OutOfMemoryError("CUDA out of memory"))),
    Case("unexpected error", TRAIN + NEW, 1, "unexpected ZeroDivisionError", _fault(ZeroDivisionError("boom"))),
    Case("Ctrl-C before any checkpoint", TRAIN + NEW, 130, "no checkpoint was saved yet. To go on, run the same command again", lambda run, tmp, mp: mp.setattr(train_module.Trainer, "_validate_and_save", _raise_interrupt)),
    Case("Ctrl-C", TRAIN + NEW, 130, "interrupted at step 2 of 4; the last checkpoint", lambda run, tmp, mp: _interrupt_after_first_checkpoint(mp)),
]  # fmt: skip


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_table(case, trained, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if case.setup:
        case.setup(run, tmp_path, monkeypatch)
    before = _fingerprint(run)
    argv = [a.format(run=run, tmp=tmp_path) for a in case.argv]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == case.code, err
    assert case.message in err, err
    assert "Traceback" not in err and [
        line.startswith("medsymmflow ") for line in err.splitlines() if ": error: " in line
    ] == [True], err
    assert _fingerprint(run) == before, "the run's files changed"
    assert not (tmp_path / "x.png").exists()


def test_the_table_counts_its_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


def test_overwrite_protection_keeps_the_run_and_its_evaluation(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["evaluate", str(run / "last"), "--split", "val"]) == 0
    evaluation = run / "evaluation_last" / "metrics_val_1draw.json"
    assert evaluation.exists() and not (run / "last" / "evaluation").exists()
    again = [a.format(tmp=tmp_path) for a in TRAIN] + ["--out", str(run), "--steps", "1", "--checkpoint-every", "1"]
    assert main(again) == 2
    assert json.loads((run / "last" / "config.json").read_text())["step"] == STEPS
    assert main(again + ["--overwrite"]) == 0
    assert json.loads((run / "last" / "config.json").read_text())["step"] == 1 and evaluation.exists()


def test_ctrl_c_leaves_a_run_that_resumes_to_the_end(tmp_path, monkeypatch, capsys):
    argv = [a.format(tmp=tmp_path) for a in TRAIN] + ["--out", str(tmp_path / "r")]
    with monkeypatch.context() as patch:
        _interrupt_after_first_checkpoint(patch)
        assert main(argv) == 130
    assert "holds step 2 and is intact. To go on, add --resume to the same command" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert json.loads((tmp_path / "r" / "last" / "config.json").read_text())["step"] == STEPS


def test_extend_continues_a_finished_run_on_a_new_cosine(trained, tmp_path, monkeypatch):
    from medsymmflow.recipes import TrainConfig, lr_factor

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    argv = [a.format(tmp=tmp_path) for a in TRAIN] + ["--out", str(run), "--resume", "--extend"]
    argv[argv.index("--steps") + 1] = "8"
    rates = []
    step = train_module.Trainer._batch

    def record(self):
        rates.append(self.optimizer.param_groups[0]["lr"])
        return step(self)

    monkeypatch.setattr(train_module.Trainer, "_batch", record)
    with monkeypatch.context() as patch:  # interrupted at step 6, after its checkpoint
        _interrupt_after_first_checkpoint(patch)
        assert main(argv) == 130
    assert main(argv[:-1]) == 0  # a plain --resume continues the extended run on its schedule
    meta = json.loads((run / "last" / "config.json").read_text())
    assert meta["step"] == 8 and meta["config"]["restart_at"] == STEPS and meta["config"]["steps"] == 8
    assert [h["step"] for h in meta["history"]] == [2, 4, 6, 8]
    config = TrainConfig(**meta["config"])
    # from the resumed step: a new cosine from the peak down to 0 at the new end, no warm-up
    assert [round(lr_factor(s, config), 6) for s in range(4, 9)] == [1.0, 0.853553, 0.5, 0.146447, 0.0]
    # and the optimizer used exactly those rates, from the first extended step on
    assert rates == pytest.approx([config.lr * lr_factor(s, config) for s in range(4, 8)])


def test_the_schedule_is_diffusers_cosine_with_warmup():
    from diffusers.optimization import get_cosine_schedule_with_warmup

    from medsymmflow.recipes import TrainConfig, lr_factor

    config = TrainConfig(steps=40, warmup_steps=7)
    reference = get_cosine_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=1.0), 7, 40).lr_lambdas[0]
    assert all(math.isclose(lr_factor(s, config), reference(s), abs_tol=1e-12) for s in range(41))


def test_debug_shows_the_traceback(trained, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "best" / "config.json").write_text("{oops")
    from medsymmflow.checkpoints import CheckpointError

    with pytest.raises(CheckpointError):
        main(["evaluate", str(run / "best"), "--debug"])
    monkeypatch.setenv("MEDSYMMFLOW_DEBUG", "1")
    with pytest.raises(CheckpointError):
        main(["evaluate", str(run / "best")])


def test_a_larger_file_alone_brings_its_own_input_size():
    from medsymmflow.cli import build_parser
    from medsymmflow.commands import train_config

    config = train_config(build_parser().parse_args(["train", "--size", "64", "--out", "x"]))
    assert (config.size, config.image_size) == (64, 64)
    config = train_config(build_parser().parse_args(["train", "--recipe", "full", "--size", "28", "--out", "x"]))
    assert (config.size, config.image_size) == (28, 32)
