import pytest
import torch

from medsymmflow.models import PRESETS, VelocityUNet, make_unet


@pytest.mark.parametrize("preset", ["tiny", "tiny-narrow", "tiny-wide"])
@pytest.mark.parametrize("size", [28, 32])
def test_tiny_velocity_unets_keep_shape(preset, size):
    net = VelocityUNet(make_unet(preset, in_channels=4, sample_size=size))
    z = torch.randn(2, 4, size, size)
    assert net(z, torch.tensor([0.0, 1.0])).shape == z.shape


def test_paper_presets_follow_the_paper():
    assert PRESETS["paper-pixel"]["block_out_channels"] == (64, 128, 128, 128)
    assert PRESETS["paper-latent"]["block_out_channels"] == (128, 256, 256, 256)
    assert PRESETS["paper-pixel"]["layers_per_block"] == 2
    unet = make_unet("paper-pixel", in_channels=6, sample_size=32)
    attention_resolutions = [32 // 2**i for i, block in enumerate(unet.config.down_block_types) if "Attn" in block]
    assert attention_resolutions == [16]


def test_tiny_wide_differs_from_tiny_only_in_its_bottom_width():
    tiny, wide = make_unet("tiny", 4, sample_size=28), make_unet("tiny-wide", 4, sample_size=28)
    differing = {key for key in tiny.config if tiny.config[key] != wide.config[key]}
    assert differing == {"block_out_channels"} and wide.config.block_out_channels == (32, 64, 128)
    assert wide.mid_block.resnets[0].conv1.in_channels == 128  # the middle block sees the whole 7 x 7 image
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert (count(tiny), count(wide)) == (1_064_228, 2_537_764)  # 1.1M and 2.5M, as the presets' docstring says


def test_tiny_narrow_halves_the_two_fine_levels_and_keeps_two_channels_a_group():
    tiny, narrow = make_unet("tiny", 4, sample_size=28), make_unet("tiny-narrow", 4, sample_size=28)
    differing = {key for key in tiny.config if tiny.config[key] != narrow.config[key]}
    assert differing == {"block_out_channels", "norm_num_groups"}
    assert narrow.config.block_out_channels == (16, 32, 64) and narrow.config.norm_num_groups == 8
    assert narrow.conv_in.out_channels == 16  # the 28 x 28 level, where most of a step's time goes
    assert sum(p.numel() for p in narrow.parameters()) == 637_332  # 0.64M, as the presets' docstring says


def test_bad_presets():
    with pytest.raises(ValueError, match="Unknown UNet preset 'huge'"):
        make_unet("huge", 1)
    with pytest.raises(ValueError, match="multiple of 8.*pad 28 px"):
        make_unet("paper-pixel", 1, sample_size=28)


def test_dropout_reaches_every_residual_block_and_acts_in_training_only():
    unet = make_unet("tiny", in_channels=4, sample_size=28, dropout=0.3)
    rates = {name: m.p for name, m in unet.named_modules() if isinstance(m, torch.nn.Dropout)}
    residual = {name: p for name, p in rates.items() if ".resnets." in name}
    assert len(residual) == 11 and set(residual.values()) == {0.3}  # down 3 x 1, mid 2, up 3 x 2 resnets
    assert set(rates.values()) - {0.3} <= {0.0}  # diffusers leaves the mid-block attention's own at 0
    net, z, t = VelocityUNet(unet), torch.randn(2, 4, 28, 28), torch.tensor([0.2, 0.9])
    net.eval()
    assert torch.equal(net(z, t), net(z, t))  # off in eval mode: classification stays deterministic
    net.train()
    assert not torch.equal(net(z, t), net(z, t))
    assert {m.p for m in make_unet("tiny", 4, sample_size=28).modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
