"""Real files, verification, downloads and every bad input of the file layer."""

import numpy as np
import pytest
import torch

from medsymmflow.data import (
    ChecksumError,
    CorruptFileError,
    DatasetUnavailableError,
    dataset_info,
    load_dataset,
    load_medmnist,
)
from medsymmflow.data import medmnist as files


@pytest.mark.parametrize("flag", ["pneumoniamnist", "retinamnist"])
def test_real_files_match_info(real_data, flag):
    data = real_data(flag)
    info = dataset_info(flag)
    assert not data.synthetic
    files.verify_md5(files.fetch(flag, download_missing=False), info["MD5"])
    for split in files.SPLITS:
        images, labels = data.images(split), data.arrays[f"{split}_labels"]
        n = info["n_samples"][split]
        channel_shape = () if info["n_channels"] == 1 else (3,)
        assert images.shape == (n, 28, 28, *channel_shape) and images.dtype == np.uint8
        assert labels.shape == (n, 1) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= set(range(len(info["label"])))
        dataset = data.dataset(split, image_size=32)
        assert len(dataset) == n
        x, y = data.tensors(split, image_size=32)
        assert x.shape == (n, info["n_channels"], 32, 32) and y.shape == (n,)
        assert x.min() >= -1 and x.max() <= 1


def test_pneumonia_counts(real_data):
    data = real_data("pneumoniamnist")
    assert data.class_counts("train").tolist() == [1214, 3494]
    assert data.class_counts("test").tolist() == [234, 390]
    assert data.source == "real PneumoniaMNIST at 28 px (the official MedMNIST file, md5-checked on load)"


def test_padding_keeps_the_image_and_fills_black(real_data):
    data = real_data("pneumoniamnist")
    x, _ = data.tensors("test", image_size=32)
    native, _ = data.tensors("test")
    assert torch.equal(x[:, :, 2:30, 2:30], native)
    assert (x[:, :, :2] == -1).all() and (x[:, :, :, 30:] == -1).all()


def test_unknown_flag_lists_valid_flags():
    with pytest.raises(ValueError, match="Unknown MedMNIST flag 'pneumonia'.*pneumoniamnist.*bloodmnist"):
        load_medmnist("pneumonia")
    with pytest.raises(ValueError, match="Valid 2D flags"):
        dataset_info("organmnist3d")


def test_unsupported_size():
    with pytest.raises(ValueError, match=r"Unsupported MedMNIST size 32.*\(28, 64, 128, 224\)"):
        load_medmnist("pneumoniamnist", size=32)


def test_larger_sizes_use_their_own_file_and_md5():
    url, md5 = files.remote("bloodmnist", 224)
    assert files.file_name("bloodmnist", 224) == "bloodmnist_224.npz"
    assert "bloodmnist_224.npz" in url and md5 == dataset_info("bloodmnist")["MD5_224"]


def test_md5_mismatch_is_refused_and_file_untouched(tmp_path, shared_file):
    original = shared_file().read_bytes()
    target = tmp_path / "pneumoniamnist.npz"
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    before = target.read_bytes()
    with pytest.raises(ChecksumError) as error:
        load_medmnist("pneumoniamnist", root=tmp_path, download=False)
    message = str(error.value)
    assert str(target) in message and dataset_info("pneumoniamnist")["MD5"] in message
    assert files.md5sum(target) in message
    assert target.read_bytes() == before
    # A corrupt file never falls back to synthetic data silently.
    with pytest.raises(ChecksumError):
        load_dataset("pneumoniamnist", root=tmp_path, download=False, allow_synthetic=True)


def test_truncated_npz_is_a_clear_error(tmp_path, shared_file):
    truncated = shared_file().read_bytes()[:100_000]
    target = tmp_path / "pneumoniamnist.npz"
    target.write_bytes(truncated)
    with pytest.raises(ChecksumError):
        load_medmnist("pneumoniamnist", root=tmp_path, download=False)
    with pytest.raises(CorruptFileError, match="not a readable npz.*truncated"):
        files.read_npz(target, "pneumoniamnist")
    assert target.read_bytes() == truncated


def test_wrong_contents_are_named(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.zeros((3, 1), np.uint8))
    with pytest.raises(
        CorruptFileError,
        match=r"train_images is uint8 \(3, 28, 28\), expected uint8 \(4708, 28, 28\).*missing val_images",
    ):
        files.read_npz(path, "pneumoniamnist")


def test_missing_file_offline_says_what_to_do(tmp_path, monkeypatch):
    # An unreachable host: a closed port on 127.0.0.1 refuses at once, like a machine offline.
    monkeypatch.setitem(files.INFO["pneumoniamnist"], "url", "http://127.0.0.1:9/pneumoniamnist.npz")
    with pytest.raises(DatasetUnavailableError) as error:
        load_medmnist("pneumoniamnist", root=tmp_path, progress=False)
    message = str(error.value)
    assert str(tmp_path / "pneumoniamnist.npz") in message
    assert "MEDSYMMFLOW_DATA" in message and "synthetic" in message
    assert list(tmp_path.iterdir()) == []


def test_download_disabled_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="downloading is disabled.*zenodo"):
        load_medmnist("retinamnist", root=tmp_path, download=False)


def test_offline_fallback_is_loud(tmp_path):
    with pytest.warns(UserWarning, match="SYNTHETIC twin of retinamnist"):
        data = load_dataset("retinamnist", root=tmp_path, download=False, allow_synthetic=True)
    assert data.synthetic and "SYNTHETIC" in data.title
    assert data.source == "the synthetic twin of RetinaMNIST at 28 px (procedural stand-in, not real data)"
    assert data.images("train").shape == (1080, 28, 28, 3)


def test_download_from_local_server(tmp_path, http_server, shared_file, monkeypatch):
    body = shared_file().read_bytes()
    http_server.routes["/pneumoniamnist.npz"] = (body, len(body))
    monkeypatch.setitem(files.INFO["pneumoniamnist"], "url", http_server.url("/pneumoniamnist.npz"))
    data = load_medmnist("pneumoniamnist", root=tmp_path, progress=False)
    assert data.images("test").shape == (624, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pneumoniamnist.npz"]


def test_interrupted_download_leaves_no_file(tmp_path, http_server, shared_file, monkeypatch):
    body = shared_file().read_bytes()
    http_server.routes["/pneumoniamnist.npz"] = (body[: len(body) // 2], len(body))
    monkeypatch.setitem(files.INFO["pneumoniamnist"], "url", http_server.url("/pneumoniamnist.npz"))
    with pytest.raises(DatasetUnavailableError, match="broke off after"):
        load_medmnist("pneumoniamnist", root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_download_is_refused_and_leaves_no_file(tmp_path, http_server, monkeypatch):
    body = b"not the official file"
    http_server.routes["/pneumoniamnist.npz"] = (body, len(body))
    monkeypatch.setitem(files.INFO["pneumoniamnist"], "url", http_server.url("/pneumoniamnist.npz"))
    with pytest.raises(ChecksumError, match="md5 is"):
        load_medmnist("pneumoniamnist", root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_an_existing_good_file(tmp_path, http_server, shared_file, monkeypatch):
    good = shared_file().read_bytes()
    dest = tmp_path / "pneumoniamnist.npz"
    dest.write_bytes(good)
    http_server.routes["/bad"] = (b"garbage", 7)
    with pytest.raises(ChecksumError):
        files.download(http_server.url("/bad"), dest, dataset_info("pneumoniamnist")["MD5"], progress=False)
    assert dest.read_bytes() == good and len(list(tmp_path.iterdir())) == 1


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(files.DATA_ENV, str(tmp_path / "env"))
    assert files.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert files.data_root() == tmp_path / "env"
    monkeypatch.delenv(files.DATA_ENV)
    assert files.data_root().parts[-2:] == ("data", "medmnist")
