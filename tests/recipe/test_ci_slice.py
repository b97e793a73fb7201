"""The recipe end to end on a tiny slice of `mini` with the debug configs (ESPnet CI style), stages 1 to 9,
then a second run that resumes (skips everything finished) and an interrupted-training resume.

Cost: ~10 ESPnet/python processes of ~15 s start-up each on 2 cores; the training itself is 1 iteration per model.
"""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from conftest import copy_recipe, recipe_env

from espnet_kalle.voice import Voice

SLICE = [
    "--local_data_opts", "--num_sentences 12 --num_dev 3 --num_test 3 --voices slt,rms,awb --nj 1",
    "--codec_config", "conf/tuning/train_flowvae_debug.yaml",
    "--lm_config", "conf/tuning/train_kalle_debug.yaml",
    "--decode_config", "conf/tuning/decode_debug.yaml",
    "--nj", "1", "--inference_nj", "1", "--num_voices", "1",
]
# Named as tts.sh / codec.sh name them: <config>_raw, then <config>_<codec tag>_<token_type>_<cleaner>.
CODEC_EXP = "exp/codec_train_flowvae_debug_raw"
LM_TAG = "train_kalle_debug_train_flowvae_debug_raw_char_tacotron"
LM_EXP = f"exp/lm_{LM_TAG}"
LATENTS = "dump/latents/train_flowvae_debug_raw_mel"  # the codec's latents + speaker log-mel
DECODE = "decode_debug_valid.loss.ave"  # <decode config>_<lm model>


def run_recipe(recipe: Path, *args: str, timeout: int = 900):
    start = time.perf_counter()
    proc = subprocess.run(["./run.sh", *SLICE, *args], cwd=recipe, env=recipe_env(), capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    for tool in ("flite", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (the mini corpus needs: apt-get install flite sox wordnet-base)")
    if not Path("/usr/share/wordnet/data.noun").is_file():
        pytest.skip("wordnet-base is not installed (the mini corpus reads its sentences from WordNet)")
    recipe = copy_recipe(tmp_path_factory.mktemp("ci") / "tts1")
    proc, seconds = run_recipe(recipe)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(recipe.rglob("*.log"))[-4:])
    assert proc.returncode == 0, f"{proc.stderr[-5000:]}\n--- last logs ---\n{logs}"
    print(f"CI slice: stages 1-9 in {seconds:.0f} s")
    return recipe, proc.stderr


def test_every_stage_ran_and_left_its_outputs(recipe):
    root, log = recipe
    for stage in range(1, 10):
        assert f") Stage {stage}:" in log, stage
    for dset in ("train", "dev", "test"):
        scp = (root / "dump/raw" / dset / "wav.scp").read_text().split("\n")[0].split()
        info = sf.info(scp[1])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    tokens = (root / "data/token_list/char_tacotron/tokens.txt").read_text().split("\n")
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-2:] == ["<sos/eos>", ""]
    assert (root / CODEC_EXP / "latest.pth").is_file() and (root / LM_EXP / "latest.pth").is_file()
    assert (root / LM_EXP / "valid.loss.ave.pth").is_file()  # packed by default, as tts.sh packs its average
    shape = (root / LATENTS / "train/feats_shape").read_text().split("\n")[0].split()[1]
    assert shape.split(",")[1] == str(2 * 8 + 8 * 80)  # mu | log_sigma | speaker log-mel
    packed = root / LM_EXP / "packed_valid.loss.ave"
    assert (packed / "model.yaml").is_file() and (root / LM_EXP / "packed_valid.loss.ave.zip").is_file()
    assert yaml.safe_load((packed / "model.yaml").read_text())["lang"] == "en"

    dec = root / LM_EXP / DECODE / "test"
    systems = (dec / "systems").read_text().split()
    assert "clone" in systems and "ttt" in systems and any(s.startswith("preset_") for s in systems), systems
    assert "resynth" in systems, systems
    clones = sorted((dec / "voices").glob("clone_*.voice.pt"))  # conf/decode.yaml: clone.continuation true
    assert clones and all(Voice.load(p).prompt_latents is not None for p in clones)
    test_utts = sorted(line.split()[0] for line in (root / "dump/raw/test/wav.scp").read_text().splitlines())
    for system in systems:
        utts = sorted(line.split()[0] for line in (dec / system / "wav.scp").read_text().splitlines())
        assert set(utts) <= set(test_utts) and utts
        if system != "ttt":  # TTT adapts to one speaker: only that speaker's sentences
            assert utts == test_utts, system
        assert len((dec / system / "rtf").read_text().splitlines()) == len(utts)
    results = (dec / "scoring/RESULTS.md").read_text()
    for system in systems + ["reference"]:
        assert system in results, system


def test_upload_stage_stages_the_packed_model_with_its_card(recipe):
    """Stage 10 with --hf_dry_run: the staged folder is the packed model (loadable as users download it) plus a
    model card with stage 9's scores and the commands the recipe wrote (exp dirs' run.sh)."""
    from espnet_kalle.synthesizer import KalleSynthesizer

    root, _ = recipe
    proc, _ = run_recipe(root, "--stage", "10", "--skip_upload_hf", "false", "--hf_repo", "ci/kalle-debug",
                         "--hf_dry_run", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    staged = root / "exp/hf_ci_kalle-debug"
    card = (staged / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["language"] == "en" and header["datasets"] == ["mini"]
    scores = (root / LM_EXP / DECODE / "test/scoring/RESULTS.md").read_text()
    table = [line for line in scores.splitlines() if line.startswith("|")]
    assert table and all(line in card for line in table)
    for exp, stage in ((CODEC_EXP, 4), (LM_EXP, 6), (f"{LM_EXP}/{DECODE}", 8)):
        command = (root / exp / "run.sh").read_text().splitlines()[-1]
        assert command.startswith("./kalle.sh --dataset mini ") and command.endswith(f'--stage {stage} "$@"')
        assert command in card
    assert KalleSynthesizer.from_pretrained(staged).lang == "en"


def test_second_run_resumes_without_redoing_work(recipe):
    root, _ = recipe
    stamp = (root / LM_EXP / "latest.pth").stat().st_mtime
    proc, seconds = run_recipe(root, "--stage", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    launched = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert not launched, launched  # every stage found its outputs complete
    assert "is complete" in proc.stderr and "is trained" in proc.stderr
    assert (root / LM_EXP / "latest.pth").stat().st_mtime == stamp
    assert seconds < 60


def test_interrupted_training_resumes_from_checkpoint(recipe):
    """Without its .done stamp the LM stage re-enters ESPnet's trainer with --resume true: it continues from
    checkpoint.pth (epoch 1 done) and trains only the new epoch. Through the exp dir's run.sh (tts.sh writes one
    too), with the tag pinned: --lm_args alone would name a new experiment."""
    root, _ = recipe
    (root / LM_EXP / ".done").unlink()
    proc = subprocess.run([f"{LM_EXP}/run.sh", "--stop_stage", "6", "--lm_tag", LM_TAG, "--lm_args", "--max_epoch 2"],
                          cwd=root, env=recipe_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train_log = (root / LM_EXP / "train.log").read_text()
    assert "The training was resumed using" in train_log
    assert "1epoch results" not in train_log and "2epoch results" in train_log
    assert (root / LM_EXP / "2epoch.pth").is_file()


def test_phoneme_input_trains_packs_and_speaks(recipe):
    """--token_type phn with ESPnet's espeak g2p (espeak-ng from the espeakng-loader wheel): a phoneme token list,
    an LM trained on it, packed with its g2p, and every test sentence decoded from phonemes; the finished codec and
    latents are reused."""
    root, _ = recipe
    proc, _ = run_recipe(root, "--stage", "3", "--stop_stage", "8", "--token_type", "phn",
                         "--g2p", "espeak_ng_english_us_vits", "--lm_tag", "debug_phn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "codec_train_flowvae_debug_raw is trained" in proc.stderr  # stages 4-5 found their outputs
    assert f"{LATENTS}/train is complete" in proc.stderr
    tokens = (root / "data/token_list/phn_tacotron_espeak_ng_english_us_vits/tokens.txt").read_text().split("\n")
    assert {"ə", "ˈ", "<space>"} <= set(tokens) and tokens[:2] == ["<blank>", "<unk>"]
    exp = root / "exp/lm_debug_phn"
    packed = yaml.safe_load((exp / "packed_valid.loss.ave/lm/config.yaml").read_text())
    assert (packed["token_type"], packed["g2p"]) == ("phn", "espeak_ng_english_us_vits")
    test_utts = sorted(line.split()[0] for line in (root / "dump/raw/test/wav.scp").read_text().splitlines())
    preset = next(s for s in (exp / DECODE / "test/systems").read_text().split() if s.startswith("preset_"))
    wavs = dict(line.split() for line in (exp / DECODE / "test" / preset / "wav.scp").read_text().splitlines())
    assert sorted(wavs) == test_utts
    assert all(sf.info(root / path).frames > 0 for path in wavs.values())  # root / an absolute path = that path
