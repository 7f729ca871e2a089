"""The CPU step's rewritten convolutions (matrix multiplies, 2x2 pixel blocks) compute what
nn.Conv2d / nn.ConvTranspose2d compute, and the variant is chosen per machine."""

import json

import pytest
import torch
import torch.nn.functional as F

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.training.cpu_convolutions import (
    VARIANTS,
    BlockConv2d,
    BlockConvTranspose2d,
    MatmulConv2d,
    MatmulConvTranspose2d,
    MatmulLogit,
    MatmulProjection,
    apply_variant,
    conv2d_as_matmul,
    conv2d_on_blocks,
    conv_transpose2d_as_matmul,
    conv_transpose2d_on_blocks,
    use_matmul_convolutions,
)
from dcgan_cli.training.cpu_tuning import CpuStep, choose_cpu_step

FORMATS = [torch.contiguous_format, torch.channels_last]


def forward_and_grads(fn, x, w):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    out = fn(x, w)
    gx, gw = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), (x, w))
    return out, gx, gw


def assert_close(ours, theirs):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("memory_format", FORMATS)
def test_conv2d_as_matmul_matches_conv2d_forward_and_gradients(memory_format):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 24, 8, 8, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(40, 24, 4, 4, generator=gen)
    ours = forward_and_grads(lambda x, w: conv2d_as_matmul(x, w, 2, 1), x, w)
    theirs = forward_and_grads(lambda x, w: F.conv2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("memory_format", FORMATS)
def test_conv_transpose2d_as_matmul_matches_conv_transpose2d_forward_and_gradients(memory_format):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 40, 4, 4, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(40, 24, 4, 4, generator=gen)
    ours = forward_and_grads(lambda x, w: conv_transpose2d_as_matmul(x, w, 2, 1), x, w)
    theirs = forward_and_grads(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].shape[-2:] == (8, 8)
    assert ours[0].is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("memory_format", FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
def test_conv2d_on_blocks_matches_the_strided_conv2d_forward_and_gradients(memory_format, channels):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, channels, 12, 8, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(16, channels, 4, 4, generator=gen)
    ours = forward_and_grads(conv2d_on_blocks, x, w)
    theirs = forward_and_grads(lambda x, w: F.conv2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].shape[-2:] == (6, 4)
    assert ours[0].stride() == theirs[0].stride()  # laid out as PyTorch lays it out


@pytest.mark.parametrize("memory_format", FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_transpose2d_on_blocks_matches_the_strided_conv_transpose2d_forward_and_gradients(memory_format, channels):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 16, 6, 4, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(16, channels, 4, 4, generator=gen)
    ours = forward_and_grads(conv_transpose2d_on_blocks, x, w)
    theirs = forward_and_grads(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].shape[-2:] == (12, 8)
    assert ours[0].stride() == theirs[0].stride()


def layer_with_weight(cls, *args):
    """(x, w) -> ``cls(*args)`` applied to x with w as its weight (so gradients reach w)."""

    def apply(x, w):
        layer = cls(*args, bias=False)
        del layer.weight
        layer.weight = w
        return layer(x)

    return apply


@pytest.mark.parametrize("memory_format", FORMATS)
def test_the_projection_and_the_logit_as_matrix_multiplies_match_their_convolutions(memory_format):
    gen = torch.Generator().manual_seed(5)
    z, w = torch.randn(6, 20, 1, 1, generator=gen), torch.randn(20, 32, 4, 4, generator=gen)
    ours = forward_and_grads(layer_with_weight(MatmulProjection, 20, 32, 4, 1, 0), z, w)
    assert_close(ours, forward_and_grads(lambda x, w: F.conv_transpose2d(x, w), z, w))
    assert ours[0].shape == (6, 32, 4, 4) and ours[0].is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(6, 32, 4, 4, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(2, 32, 4, 4, generator=gen)
    ours = forward_and_grads(layer_with_weight(MatmulLogit, 32, 2, 4, 1, 0), x, w)
    assert_close(ours, forward_and_grads(lambda x, w: F.conv2d(x, w), x, w))
    assert ours[0].shape == (6, 2, 1, 1)


def test_narrow_models_keep_their_convolutions():
    netG, netD = build_models(DCGANConfig(size=32, channels=1, ngf=64, ndf=64), seed=0)
    use_matmul_convolutions(netG, netD)
    assert type(netG.blocks[1].conv) is torch.nn.ConvTranspose2d and type(netD.blocks[-1].conv) is torch.nn.Conv2d


def test_swapped_layers_keep_weights_names_and_outputs():
    netG, netD = build_models(DCGANConfig(size=64, channels=3, ngf=64, ndf=64), seed=0)
    netG.eval(), netD.eval()
    keys = (list(netG.state_dict()), list(netD.state_dict()))
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(2))
    before_g = netG(z)
    before_d = netD(before_g)
    use_matmul_convolutions(netG, netD)
    assert type(netG.blocks[1].conv) is MatmulConvTranspose2d
    assert type(netD.blocks[-1].conv) is MatmulConv2d
    assert (list(netG.state_dict()), list(netD.state_dict())) == keys
    torch.testing.assert_close(netG(z), before_g, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(netD(before_g), before_d, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- choosing a variant per machine


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DCGAN_CPU_STEP", raising=False)
    return tmp_path / "cache" / "cpu-step.json"


def test_the_variant_is_timed_once_then_read_from_the_cache_and_the_global_rng_is_untouched(cache):
    model = DCGANConfig(size=32, channels=1, ngf=8, ndf=8)
    rng = torch.get_rng_state()
    variant, key, source = choose_cpu_step(model, 16)
    assert torch.equal(torch.get_rng_state(), rng), "checkpoints record the global RNG: timing must not move it"
    assert source == "measured" and variant in VARIANTS
    entry = json.loads(cache.read_text())["entries"][key]
    assert entry["variant"] == variant and set(entry["step_seconds"]) == set(VARIANTS)
    # The fastest recorded (rounding may tie two; it never reverses them).
    assert entry["step_seconds"][variant] == min(entry["step_seconds"].values())
    assert "batch 16" in key and "32x32x1" in key and torch.__version__ in key
    # The cache answers from now on, whatever it says (here: the other variant).
    other = next(v for v in VARIANTS if v != variant)
    data = json.loads(cache.read_text())
    data["entries"][key]["variant"] = other
    cache.write_text(json.dumps(data))
    assert choose_cpu_step(model, 16) == (other, key, "cached")
    # Another batch size is another entry.
    assert choose_cpu_step(model, 32)[2] == "measured"
    assert entry["clock"] == "process-cpu"


def test_an_entry_timed_by_wall_clock_is_timed_again(cache):
    """Entries written before steps were compared by CPU time (one, timed on a loaded machine,
    had cached the slower variant) are not trusted."""
    model = DCGANConfig(size=32, channels=1, ngf=8, ndf=8)
    _, key, _ = choose_cpu_step(model, 16)
    data = json.loads(cache.read_text())
    del data["entries"][key]["clock"]
    cache.write_text(json.dumps(data))
    assert choose_cpu_step(model, 16)[2] == "measured"
    assert json.loads(cache.read_text())["entries"][key]["clock"] == "process-cpu"


def test_an_entry_timed_before_a_variant_existed_is_timed_again(cache):
    """A cache written by an older dcgan-cli never compared the variants added since."""
    model = DCGANConfig(size=32, channels=1, ngf=8, ndf=8)
    _, key, _ = choose_cpu_step(model, 16)
    data = json.loads(cache.read_text())
    del data["entries"][key]["step_seconds"]["blocks"]
    data["entries"][key]["variant"] = "onednn"
    cache.write_text(json.dumps(data))
    assert choose_cpu_step(model, 16)[2] == "measured"
    assert set(json.loads(cache.read_text())["entries"][key]["step_seconds"]) == set(VARIANTS)
    data = json.loads(cache.read_text())
    data["entries"][key]["step_seconds"] = 5  # a damaged entry is timed again, not a crash
    cache.write_text(json.dumps(data))
    assert choose_cpu_step(model, 16)[2] == "measured"


def test_a_damaged_cache_is_measured_again_and_an_unknown_forced_variant_is_refused(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    model = DCGANConfig(size=32, channels=1, ngf=8, ndf=8)
    assert choose_cpu_step(model, 8)[2] == "measured"
    assert json.loads(cache.read_text())["format"] == "dcgan-cli/cpu-step"
    monkeypatch.setenv("DCGAN_CPU_STEP", "matmul")
    assert choose_cpu_step(model, 8)[::2] == ("matmul", "forced")
    monkeypatch.setenv("DCGAN_CPU_STEP", "fastest")
    with pytest.raises(DcganError, match="DCGAN_CPU_STEP='fastest' is not a CPU step variant"):
        choose_cpu_step(model, 8)


def test_the_blocks_variant_rewrites_the_models_ends_keeping_weights_names_and_training_gradients():
    config = DCGANConfig(size=32, channels=3, ngf=16, ndf=16)
    netG, netD = build_models(config, seed=0)
    theirs_g, theirs_d = build_models(config, seed=0)
    keys = (list(netG.state_dict()), list(netD.state_dict()))
    apply_variant(netG, netD, "blocks")
    assert type(netD.blocks[0].conv) is BlockConv2d and type(netG.to_image.conv) is BlockConvTranspose2d
    assert type(netG.blocks[0].conv) is MatmulProjection and type(netD.to_logit) is MatmulLogit
    assert type(netG.blocks[1].conv) is torch.nn.ConvTranspose2d and type(netD.blocks[1].conv) is torch.nn.Conv2d
    assert (list(netG.state_dict()), list(netD.state_dict())) == keys
    for model in (netG, netD, theirs_g, theirs_d):
        model.to(memory_format=torch.channels_last)
    z = torch.randn(8, 100, generator=torch.Generator().manual_seed(6))
    for g, d in ((netG, netD), (theirs_g, theirs_d)):  # training mode: BatchNorm on batch statistics
        d(g(z)).sum().backward()
    torch.testing.assert_close(netD(netG(z)), theirs_d(theirs_g(z)), rtol=1e-4, atol=1e-5)
    for ours, theirs in zip([*netG.parameters(), *netD.parameters()], [*theirs_g.parameters(), *theirs_d.parameters()]):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-3, atol=1e-4 * theirs.grad.abs().max().item())
    apply_variant(netG, netD, "onednn")
    assert all(
        type(m) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        for m in (netD.blocks[0].conv, netG.to_image.conv, netG.blocks[0].conv, netD.to_logit)
    )


def test_variants_switch_both_ways_and_a_resume_keeps_the_checkpoints_variant():
    netG, netD = build_models(DCGANConfig(size=64, channels=3, ngf=64, ndf=64), seed=0)
    apply_variant(netG, netD, "matmul")
    assert type(netG.blocks[1].conv) is MatmulConvTranspose2d
    apply_variant(netG, netD, "onednn")
    assert type(netG.blocks[1].conv) is torch.nn.ConvTranspose2d and type(netD.blocks[-1].conv) is torch.nn.Conv2d
    chosen = CpuStep("onednn", "this machine", "cached")
    resumed = chosen.resume({"cpu_step": "matmul", "cpu_step_key": "this machine"}, netG, netD)
    assert resumed.variant == "matmul" and type(netD.blocks[-1].conv) is MatmulConv2d
    assert resumed.record() == {"cpu_step": "matmul", "cpu_step_key": "this machine"}
    # A checkpoint from another machine (or model) does not decide, nor does it beat a forced choice.
    assert chosen.resume({"cpu_step": "matmul", "cpu_step_key": "elsewhere"}, netG, netD) is chosen
    forced = CpuStep("onednn", "this machine", "forced")
    assert forced.resume({"cpu_step": "matmul", "cpu_step_key": "this machine"}, netG, netD) is forced


def test_a_trained_runs_checkpoints_record_the_variant(trained_run_session):
    from dcgan_cli.training.checkpoints import latest_checkpoint

    meta = latest_checkpoint(trained_run_session)[2]
    assert meta["cpu_step"] in VARIANTS and "32x32x1" in meta["cpu_step_key"]


def test_a_run_on_the_blocks_variant_resumes_bitwise_identical_on_it(tmp_path, make_run, resume_and_check, monkeypatch):
    from dcgan_cli.training.checkpoints import latest_checkpoint

    monkeypatch.setenv("DCGAN_CPU_STEP", "blocks")
    straight = make_run(tmp_path / "straight", steps=28, batch_size=128)
    split = make_run(tmp_path / "split", steps=14, batch_size=128)
    resume_and_check(split, at=14, until=28)
    (_, a, meta), (_, b, _) = latest_checkpoint(straight), latest_checkpoint(split)
    assert meta["cpu_step"] == "blocks"
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
