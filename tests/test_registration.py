"""Registration of espnet-kalle's models with ESPnet's stock tasks, and the ``espnet_kalle.run`` wrapper."""

import os
import subprocess
import sys

import pytest

from espnet_kalle.tasks import registry


def run_python(*args, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def test_import_is_cheap_and_register_is_lazy():
    code = (
        "import sys, espnet_kalle\n"
        "heavy = [m for m in ('torch', 'espnet2', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from espnet_kalle.tasks.registry import register\n"
        "assert espnet_kalle.register is register\n"
        "assert 'register' in dir(espnet_kalle)\n"
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr


def test_register_is_idempotent_and_visible_to_the_stock_parser(tmp_path):
    from espnet2.tasks.gan_codec import GANCodecTask, codec_choices

    from espnet_kalle import register
    from espnet_kalle.codec.espnet_model import FlowVAECodec

    codec_choices.classes.pop("flow_vae", None)
    with pytest.raises(SystemExit):  # stock ESPnet does not know the name
        GANCodecTask.get_parser().parse_args(["--codec", "flow_vae", "--output_dir", str(tmp_path)])

    # (limited to the codec task: registering "tts" too would import espnet2.tasks.tts, ~10 s)
    assert register(["gan_codec"]) == ["gan_codec:flow_vae"]
    assert register(["gan_codec"]) == ["gan_codec:flow_vae"]  # second call: same state, no error
    assert codec_choices.classes["flow_vae"] is FlowVAECodec
    assert list(codec_choices.classes).count("flow_vae") == 1

    args = GANCodecTask.get_parser().parse_args(
        ["--codec", "flow_vae", "--output_dir", str(tmp_path), "--codec_conf", "lambda_kl=0.5"]
    )
    assert args.codec == "flow_vae"
    args.codec_conf = dict(
        args.codec_conf,
        generator_params=dict(
            latent_dim=4, downsample_rates=[4, 5], downsample_channels=[4, 4, 4], residual_dilations=[1],
            flow_hidden_channels=4, flow_layers=1, flow_couplings=1, decoder_type="istft",
            decoder_conf=dict(hop_length=20, dim=8, intermediate_dim=8, num_layers=1),
        ),
        discriminator_params=dict(periods=[2], resolutions=[], channel_mult=0.125),
    )
    model = GANCodecTask.build_model(args)  # the stock build path instantiates our class
    assert isinstance(model.codec, FlowVAECodec) and model.codec.lambda_kl == 0.5


def test_register_refuses_to_replace_a_foreign_class():
    from espnet2.tasks.gan_codec import codec_choices

    registry.register(["gan_codec"])
    original = codec_choices.classes["flow_vae"]
    codec_choices.classes["flow_vae"] = codec_choices.classes["dac"]
    try:
        with pytest.raises(RuntimeError, match="already maps"):
            registry.register(["gan_codec"])
    finally:
        codec_choices.classes["flow_vae"] = original


def test_optional_rows_are_skipped_until_their_module_exists(monkeypatch):
    from espnet2.tasks.gan_codec import codec_choices

    missing = registry.Choice("gan_codec", "codec_choices", "zz_later", "espnet_kalle.not_yet.module:Model", True)
    monkeypatch.setattr(registry, "CHOICES", [missing])
    assert registry.register() == []
    assert "zz_later" not in codec_choices.classes
    monkeypatch.setattr(registry, "CHOICES", [missing._replace(optional=False)])
    with pytest.raises(ModuleNotFoundError):
        registry.register()


def test_run_wrapper_task_selection():
    from espnet_kalle.run import _tasks_for

    assert _tasks_for("espnet2.bin.gan_codec_train") == ["gan_codec"]
    assert _tasks_for("espnet2.bin.gan_codec_inference") == ["gan_codec"]
    assert _tasks_for("espnet2.bin.tts_inference") == ["tts"]
    assert _tasks_for("espnet2.bin.launch") is None


@pytest.mark.parametrize(
    "argv",
    [[], ["espnet2.bin.gan_codec_train"], ["-m"], ["-m", "--config"], ["-m", "espnet2.bin.no_such_module"]],
)
def test_run_wrapper_usage_errors(argv):
    proc = run_python("-m", "espnet_kalle.run", *argv)
    assert proc.returncode == 2
    assert "usage: python -m espnet_kalle.run -m espnet2.bin.<module>" in proc.stderr


def test_run_wrapper_never_downloads_nltk_data(tmp_path):
    """ESPnet's preprocessing imports g2p_en, which calls nltk.download on import: the wrapper must refuse it."""
    env = {**os.environ, "NLTK_DATA": str(tmp_path)}  # no NLTK data: g2p_en would fetch it
    proc = subprocess.run([sys.executable, "-m", "espnet_kalle.run", "-m", "espnet2.bin.tts_train", "--help"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[nltk_data]" not in proc.stderr + proc.stdout  # nltk's own downloader never started
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fails", [False, True])
def test_run_wrapper_closes_the_process_group_the_module_opened(tmp_path, monkeypatch, fails):
    """ESPnet's trainer never destroys its process group; the wrapper must, whether the module succeeds or fails."""
    import torch.distributed as dist

    from espnet_kalle import run

    (tmp_path / "opens_group.py").write_text(
        "import torch.distributed as dist\n"
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'init'}', rank=0, world_size=1)\n"
        f"if {fails}:\n    raise RuntimeError('training failed')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    try:
        if fails:
            with pytest.raises(RuntimeError, match="training failed"):
                run.main(["-m", "opens_group"])
        else:
            run.main(["-m", "opens_group"])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_processes_spawned_by_the_wrapped_module_see_our_models(tmp_path):
    """ESPnet's multi-GPU mode starts one ``spawn`` process per GPU running ``Task.main_worker``, which builds the
    model by name: those processes must have our classes registered too, not only the wrapper's own process."""
    (tmp_path / "child_target.py").write_text(
        "def report(path):\n"
        "    from espnet2.tasks.gan_codec import codec_choices\n"
        "    open(path, 'w').write(' '.join(codec_choices.classes))\n"
    )
    (tmp_path / "spawns_workers.py").write_text(
        "import multiprocessing, sys\n"
        "from child_target import report\n"
        "if __name__ == '__main__':\n"
        "    worker = multiprocessing.get_context('spawn').Process(target=report, args=(sys.argv[1],))\n"
        "    worker.start()\n"
        "    worker.join()\n"
        "    sys.exit(worker.exitcode)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "choices.txt"
    run = subprocess.run([sys.executable, "-m", "espnet_kalle.run", "-m", "spawns_workers", str(out)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "flow_vae" in out.read_text().split()
