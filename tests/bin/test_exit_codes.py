"""The exit-code contract of every console script (README, "Exit codes"): 0 ok, 2 bad input, 3 model missing or
unreadable, one line on stderr, no traceback, arguments checked before any model loads.

Each script's ``main`` is called in-process (as its console-script wrapper calls it) on real files: a packed tiny
model, copies of it broken one way each, real WAV files and real released-checkpoint fixtures.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet_kalle.bin.convert_official import build_parser as convert_parser
from espnet_kalle.bin.convert_official import main as convert_main
from espnet_kalle.bin.extract_latents import get_parser as extract_parser
from espnet_kalle.bin.extract_latents import main as extract_main
from espnet_kalle.bin.score import get_parser as score_parser
from espnet_kalle.bin.score import main as score_main
from espnet_kalle.bin.tts import build_parser as tts_parser
from espnet_kalle.bin.tts import main as tts_main

wyoming_main = pytest.importorskip("wyoming_kalle.__main__")

RELEASE = Path(__file__).resolve().parents[1] / "data" / "official_release" / "release_small"
PROMPT_TEXT = "one division of la force is called the court of saint bernard."


def one_line_error(capsys, prog: str, *expected: str) -> str:
    """The stderr of a failed run: one line ``PROG: ...`` holding every ``expected`` text, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], err
    return lines[0]


# ---------------------------------------------------------------------------------------------- broken models
def broken_copy(model_dir: Path, tmp_path: Path, how: str) -> Path:
    """A copy of a packed model dir, broken one way."""
    out = tmp_path / f"model-{how}"
    shutil.copytree(model_dir, out)
    meta_path = out / "model.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    if how == "malformed":
        meta_path.write_text("format: espnet-kalle/1\nlm_config: [unclosed\n")
    elif how == "not-a-mapping":
        meta_path.write_text("- just\n- a list\n")
    elif how == "incomplete":
        del meta["lm_model"]
        meta_path.write_text(yaml.safe_dump(meta))
    elif how == "other-format":
        meta_path.write_text(yaml.safe_dump({**meta, "format": "espnet-kalle/9"}))
    elif how == "no-format":
        del meta["format"]
        meta_path.write_text(yaml.safe_dump(meta))
    elif how == "missing-part":
        (out / meta["codec_model"]).unlink()
    elif how == "corrupt-weights":
        (out / meta["lm_model"]).write_bytes(os.urandom(2000))
    elif how == "corrupt-config":
        (out / meta["lm_config"]).write_text("tts: kalle\ntts_conf: {latent_dim: [\n")
    elif how == "corrupt-voice":
        next((out / "voices").glob("*.voice.pt")).write_bytes(b"not a voice")
    return out


BROKEN = ["malformed", "not-a-mapping", "incomplete", "other-format", "no-format", "missing-part", "corrupt-weights",
          "corrupt-config", "corrupt-voice"]
REASON = {"malformed": "not readable YAML", "not-a-mapping": "must be a mapping", "incomplete": "lm_model",
          "other-format": "espnet-kalle/9", "no-format": "format is None", "missing-part": "codec_model",
          "corrupt-weights": "not a readable", "corrupt-config": "lm", "corrupt-voice": "preset voice"}


@pytest.mark.parametrize("how", BROKEN)
def test_kalle_tts_exits_3_on_a_broken_model(tiny_model_dir, tmp_path, capsys, how):
    model = broken_copy(tiny_model_dir, tmp_path, how)
    out = tmp_path / "x.wav"
    assert tts_main(["hello.", "-o", str(out), "--model", str(model)]) == 3
    one_line_error(capsys, "kalle-tts", "cannot load model", REASON[how])
    assert not out.exists()


def test_kalle_tts_exits_3_on_a_missing_model(tmp_path, capsys):
    assert tts_main(["hello.", "-o", str(tmp_path / "x.wav"), "--model", str(tmp_path / "nowhere")]) == 3
    one_line_error(capsys, "kalle-tts", "cannot load model", "nowhere")


# ---------------------------------------------------------------------------------------------- kalle-tts input
@pytest.fixture()
def prompt(tmp_path):
    """3 s of a voiced-like signal: long enough for a prompt and for PROMPT_TEXT's 62 characters."""
    t = np.arange(3 * 16000) / 16000
    path = tmp_path / "prompt.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("case", ["missing-dir", "a-directory", "under-a-file"])
def test_kalle_tts_refuses_bad_output_paths_before_loading_a_model(tmp_path, capsys, case):
    """A missing model would exit 3 if it were loaded first: exit 2 shows the path was checked before."""
    (tmp_path / "file.txt").write_text("x")
    output = {"missing-dir": tmp_path / "no" / "x.wav", "a-directory": tmp_path,
              "under-a-file": tmp_path / "file.txt" / "x.wav"}[case]
    assert tts_main(["hello.", "-o", str(output), "--model", str(tmp_path / "no-model")]) == 2
    one_line_error(capsys, "kalle-tts", str(output))


@pytest.mark.parametrize(
    "args,message",
    [
        (["", "-o", "{tmp}/x.wav"], "empty text"),
        (["   ", "-o", "{tmp}/x.wav"], "empty text"),
        (["hi.", "-o", "{tmp}/x.wav", "--prompt-wav", "{tmp}/none.wav", "--prompt-text", "hi"], "none.wav"),
        (["hi.", "-o", "{tmp}/x.wav", "--speed", "9"], "--speed"),
        (["hi.", "-o", "{tmp}/x.wav", "--ttt-steps", "0"], "--ttt-steps"),
        (["hi.", "-o", "{tmp}/x.wav", "--device", "toaster"], "--device toaster"),
        (["hi.", "-o", "{tmp}/x.wav", "--no-such-flag"], "--no-such-flag"),
    ],
)
def test_kalle_tts_checks_arguments_before_loading_a_model(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args] + ["--model", str(tmp_path / "no-model")]
    assert tts_main(args) == 2
    one_line_error(capsys, "kalle-tts", message)
    assert not (tmp_path / "x.wav").exists()


def test_kalle_tts_refuses_bad_prompts_and_voices(tiny_model_dir, tmp_path, prompt, capsys):
    out = tmp_path / "x.wav"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(1600, np.float32), 16000)
    bad_voice = tmp_path / "bad.voice.pt"
    bad_voice.write_bytes(b"not torch")
    cases = [
        (["--prompt-wav", str(corrupt), "--prompt-text", PROMPT_TEXT], "unreadable or corrupt audio"),
        (["--prompt-wav", str(short), "--prompt-text", PROMPT_TEXT], "prompt audio is 0.1 s"),
        (["--prompt-wav", str(prompt), "--prompt-text", "hi"], "transcript of this recording"),
        (["--voice", "nobody"], "unknown voice 'nobody'"),
        (["--voice", str(bad_voice)], "bad.voice.pt"),
        ([], "nothing speakable"),
    ]
    for extra, message in cases:
        text = "..." if not extra else "hello."
        assert tts_main([text, "-o", str(out), "--model", str(tiny_model_dir), *extra]) == 2, message
        one_line_error(capsys, "kalle-tts", message)
        assert not out.exists()


def test_kalle_tts_console_script_exits_3_in_a_subprocess(tmp_path):
    """The installed console script itself: status and stderr as a shell sees them."""
    script = shutil.which("kalle-tts", path=str(Path(sys.executable).parent)) or "kalle-tts"
    proc = subprocess.run([script, "hello.", "-o", str(tmp_path / "x.wav"), "--model", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    assert proc.stderr.startswith("kalle-tts: cannot load model") and proc.stderr.count("\n") == 1, proc.stderr


# ------------------------------------------------------------------------------------- kalle-extract-latents
@pytest.fixture()
def scp(tmp_path):
    sf.write(tmp_path / "a.wav", 0.1 * np.ones(16000, np.float32), 16000)
    path = tmp_path / "wav.scp"
    path.write_text(f"a {tmp_path / 'a.wav'}\n")
    return path


def test_kalle_extract_latents_contract(tiny_model_dir, tmp_path, scp, capsys):
    codec = tiny_model_dir / "codec"
    good = ["--codec-config", str(codec / "config.yaml"), "--codec-model", str(codec / "model.pth"),
            "--wav-scp", str(scp)]
    (tmp_path / "file.txt").write_text("x")
    assert extract_main([*good, "--out-dir", str(tmp_path / "file.txt")]) == 2
    one_line_error(capsys, "kalle-extract-latents", "file.txt")
    piped = tmp_path / "piped.scp"
    piped.write_text("a sox a.flac -t wav - |\n")
    assert extract_main([*good[:4], "--wav-scp", str(piped), "--out-dir", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "kalle-extract-latents", "pipe commands are not supported")
    assert extract_main([*good[:4], "--wav-scp", str(tmp_path / "none.scp"), "--out-dir", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "kalle-extract-latents", "none.scp")
    assert extract_main(["--codec-dir", str(tmp_path / "no-codec"), "--wav-scp", str(scp),
                         "--out-dir", str(tmp_path / "o")]) == 3
    one_line_error(capsys, "kalle-extract-latents", "cannot load the codec", "no-codec")
    broken = tmp_path / "codec"
    shutil.copytree(codec, broken)
    (broken / "config.yaml").write_text("codec: flow_vae\ncodec_conf: {generator_params: [\n")
    assert extract_main(["--codec-config", str(broken / "config.yaml"), "--codec-model", str(broken / "model.pth"),
                         "--wav-scp", str(scp), "--out-dir", str(tmp_path / "o")]) == 3
    one_line_error(capsys, "kalle-extract-latents", "cannot load the codec")
    assert extract_main([*good, "--out-dir", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "feats.scp").is_file()


# ---------------------------------------------------------------------------------------------- kalle-score
def test_kalle_score_contract(tmp_path, capsys):
    ref = tmp_path / "ref"
    ref.mkdir()
    sf.write(ref / "a.wav", 0.1 * np.ones(16000, np.float32), 16000)
    (ref / "wav.scp").write_text(f"a {ref / 'a.wav'}\n")
    (ref / "text").write_text("a hello\n")
    (tmp_path / "file.txt").write_text("x")
    assert score_main(["--ref-dir", str(ref), "--metrics", "rtf", "--out", str(tmp_path / "file.txt")]) == 2
    one_line_error(capsys, "kalle-score", "file.txt")
    assert score_main(["--ref-dir", str(tmp_path / "no-ref"), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "kalle-score", "no-ref")
    assert score_main(["--ref-dir", str(ref), "--whisper", str(tmp_path / "no-whisper"),
                       "--out", str(tmp_path / "o")]) == 3
    one_line_error(capsys, "kalle-score", "cannot load the ASR model", "no-whisper")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ kalle-convert-official
def test_kalle_convert_official_contract(tmp_path, capsys):
    release = tmp_path / "KALL-E"
    (release / "configs").mkdir(parents=True)
    (release / "ckpt").mkdir()
    shutil.copyfile(RELEASE / "config.json", release / "configs" / "flowvae_dim1024_12p5hz.json")
    shutil.copytree(RELEASE / "tokenizer_dir", release / "tokenizer_dir")
    shutil.copyfile(RELEASE / "flowvae.pt", release / "ckpt" / "flowvae.pt")
    (release / "ckpt" / "model.pt").write_bytes(os.urandom(1000))  # a truncated download
    (tmp_path / "file.txt").write_text("x")
    assert convert_main(["--release", str(release), "--out", str(tmp_path / "file.txt")]) == 2
    one_line_error(capsys, "kalle-convert-official", "file.txt")
    assert convert_main(["--release", str(release), "--out", str(tmp_path / "out"), "--head-dim", "8"]) == 3
    one_line_error(capsys, "kalle-convert-official", "cannot load the released model", "model.pt")
    (release / "configs" / "flowvae_dim1024_12p5hz.json").write_text("{not json")
    shutil.copyfile(RELEASE / "model.pt", release / "ckpt" / "model.pt")
    assert convert_main(["--release", str(release), "--out", str(tmp_path / "out"), "--head-dim", "8"]) == 3
    one_line_error(capsys, "kalle-convert-official", "not a JSON Flow-VAE config")
    assert convert_main(["--flowvae", str(release / "ckpt" / "flowvae.pt"), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "kalle-convert-official", "--flowvae-config is required")
    assert not (tmp_path / "out" / "model.yaml").exists()


# ------------------------------------------------------------------------------------------- wyoming-kalle
def test_wyoming_server_start_contract(tiny_model_dir, tmp_path, capsys):
    """A start that fails returns before serving: 3 for the model, 2 for the options."""
    assert wyoming_main.main(["--model", str(tmp_path / "nowhere")]) == 3
    one_line_error(capsys, "wyoming-kalle", "cannot load model", "nowhere")
    broken = broken_copy(tiny_model_dir, tmp_path, "incomplete")
    assert wyoming_main.main(["--model", str(broken)]) == 3
    one_line_error(capsys, "wyoming-kalle", "cannot load model", "lm_model")
    assert wyoming_main.main(["--model", str(tiny_model_dir), "--voice", "nobody"]) == 2
    one_line_error(capsys, "wyoming-kalle", "--voice 'nobody' is not available")
    assert wyoming_main.main(["--model", str(tmp_path / "nowhere"), "--voices-dir", str(tmp_path / "none")]) == 2
    one_line_error(capsys, "wyoming-kalle", "--voices-dir")
    assert wyoming_main.main(["--model", str(tmp_path / "nowhere"), "--speed", "9"]) == 2
    one_line_error(capsys, "wyoming-kalle", "--speed")


# ------------------------------------------------------------------------------------------------ flags
PARSERS = {"kalle-tts": tts_parser, "kalle-extract-latents": extract_parser, "kalle-score": score_parser,
           "kalle-convert-official": convert_parser, "wyoming-kalle": lambda: wyoming_main.build_parser()}


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_flag_has_help_and_one_spelling_style(prog):
    for action in PARSERS[prog]()._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{prog} {action.option_strings or action.dest}: no help text"
        for flag in action.option_strings:
            assert flag == "-o" or (flag.startswith("--") and "_" not in flag and flag == flag.lower()), (prog, flag)


def test_seed_means_the_same_in_kalle_tts_and_wyoming():
    """--sampling-seed is the sampling noise in both; Wyoming's old --seed still sets it (deprecated)."""
    tts = tts_parser().parse_args(["hi", "--sampling-seed", "5", "--seed", "7"])
    assert (tts.sampling_seed, tts.seed) == (5, 7)
    server = wyoming_main.build_parser()
    assert wyoming_main.synthesis_options(server.parse_args(["--sampling-seed", "5"])).seed == 5
    assert wyoming_main.synthesis_options(server.parse_args(["--seed", "6"])).seed == 6
    assert wyoming_main.synthesis_options(server.parse_args([])).seed == 0
