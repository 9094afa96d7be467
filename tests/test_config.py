import pytest
import torch

from medsymmflow import config


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "full")
    assert config.profile().name == "full"
    monkeypatch.setenv(config.PROFILE_ENV, "FAST")
    assert config.profile().is_fast


def test_profile_default_follows_cuda(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    assert config.profile().name == ("full" if torch.cuda.is_available() else "fast")


def test_pick_returns_the_profiles_value():
    assert config.Profile("fast").pick(fast=1, full=2) == 1
    assert config.Profile("full").pick(fast=1, full=2) == 2


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "turbo")
    with pytest.raises(ValueError, match="Unknown profile 'turbo'.*fast.*full"):
        config.profile()


def test_seed_everything_is_reproducible():
    config.seed_everything(3)
    a = torch.randn(5)
    generator = config.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(torch.randn(2, generator=generator), torch.randn(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="non-negative integer"):
        config.seed_everything(-1)


def test_device_choice():
    assert config.get_device("cpu") == torch.device("cpu")
    assert config.get_device().type in {"cuda", "mps", "cpu"}
