"""The recipe's shell pieces (option parser, job launchers, stage selection) and a dry run of every conf/ yaml."""

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import RECIPE, copy_recipe, recipe_env

UTILS = RECIPE / "utils"


def bash(script: str, cwd: Path, env=None):
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=recipe_env(env), capture_output=True, text=True,
                          timeout=120)


# ------------------------------------------------------------------------------------------- parse_options.sh
PARSER_SCRIPT = """set -euo pipefail
stage=1; use_gpu=false; train_set=train; some_opt=""
help_message="usage: x"
. {utils}/parse_options.sh
echo "stage=$stage use_gpu=$use_gpu train_set=$train_set some_opt=$some_opt rest=$*"
"""


def parse(args: str, tmp_path: Path):
    return bash(f"set -- {args}\n" + PARSER_SCRIPT.format(utils=UTILS), tmp_path)


def test_parse_options_sets_known_variables(tmp_path):
    out = parse("--stage 3 --use_gpu true --train-set tr_no_dev --some_opt='--a 1' pos1 pos2", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=3 use_gpu=true train_set=tr_no_dev some_opt=--a 1 rest=pos1 pos2"


def test_parse_options_rejects_unknown_and_bad_booleans(tmp_path):
    out = parse("--stag 3", tmp_path)
    assert out.returncode != 0 and "unknown option '--stag'" in out.stderr
    out = parse("--use_gpu yes", tmp_path)
    assert out.returncode != 0 and "expects true or false" in out.stderr
    out = parse("--stage", tmp_path)
    assert out.returncode != 0 and "needs a value" in out.stderr


def test_parse_options_config_file_and_help(tmp_path):
    (tmp_path / "opts.sh").write_text("stage=7\ntrain_set=from_file\n")
    out = parse("--config opts.sh --stage 8", tmp_path)
    assert out.returncode == 0 and "stage=8 use_gpu=false train_set=from_file" in out.stdout
    out = parse("--help", tmp_path)
    assert out.returncode == 0 and "usage: x" in out.stderr


# ---------------------------------------------------------------------------------------------- utils/run.sh
def test_run_sh_runs_parallel_jobs_with_logs_and_reports_failures(tmp_path):
    out = bash(f"{UTILS}/run.sh --gpu 0 JOB=1:3 log/echo.JOB.log echo job JOB \\| tr a-z A-Z", tmp_path)
    assert out.returncode == 0, out.stderr
    for j in (1, 2, 3):
        text = (tmp_path / f"log/echo.{j}.log").read_text()
        assert f"JOB {j}\n" in text and "# Ended (code 0)" in text and text.startswith(f"# echo job {j}")
    out = bash(f"{UTILS}/run.sh --max_jobs_run 1 JOB=1:3 log/t.JOB.log test JOB -ne 2", tmp_path)
    assert out.returncode != 0 and "1 / 3 failed, log is in log/t.2.log" in out.stderr
    assert "# Ended (code 1)" in (tmp_path / "log/t.2.log").read_text()
    out = bash(f"{UTILS}/run.sh log/one.log python3 -c 'import sys; print(sys.argv[1:])' 'a b' c", tmp_path)
    assert out.returncode == 0 and "['a b', 'c']" in (tmp_path / "log/one.log").read_text()


def test_slurm_launcher_with_a_fake_sbatch(tmp_path):
    """utils/slurm.sh writes a batch script and runs it through sbatch --wait (here a stand-in that runs it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("""#!/usr/bin/env bash
# Stand-in for sbatch --wait: runs each array task of the script in turn; records its options.
echo "$@" > "$(dirname "${@: -1}")/sbatch.args"
range=1-1
while (( $# > 1 )); do case "$1" in --array) range="${2%%%*}"; shift 2 ;; *) shift ;; esac; done
rc=0
for (( i=${range%-*}; i<=${range#*-}; i++ )); do SLURM_ARRAY_TASK_ID=$i bash "$1" || rc=1; done
exit $rc
""")
    (bin_dir / "sbatch").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{recipe_env()['PATH']}"}
    out = bash(f"{UTILS}/slurm.sh --gpu 2 --mem 8G --time 1:00:00 JOB=1:2 log/s.JOB.log echo task JOB", tmp_path, env)
    assert out.returncode == 0, out.stderr
    for j in (1, 2):
        assert f"task {j}\n" in (tmp_path / f"log/s.{j}.log").read_text()
    args = (tmp_path / "log/q/sbatch.args").read_text()
    assert "--gres gpu:2" in args and "--array 1-2" in args and "--wait" in args and "--mem 8G" in args
    out = bash(f"{UTILS}/slurm.sh JOB=1:2 log/f.JOB.log test JOB -eq 1", tmp_path, env)
    assert out.returncode != 0 and "slurm job failed" in out.stderr
    # espnet2.bin.launch recognises the Slurm launcher by the file name slurm.pl.
    assert (UTILS / "slurm.pl").resolve() == (UTILS / "slurm.sh").resolve()
    assert subprocess.run(["bash", "-n", str(UTILS / "slurm.sh")]).returncode == 0


# ------------------------------------------------------------------------------------------------- kalle.sh
@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return copy_recipe(tmp_path_factory.mktemp("recipe") / "tts1")


def run_recipe(recipe: Path, *args: str):
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=recipe_env(), capture_output=True, text=True,
                          timeout=120)


def stages_run(stderr: str):
    return sorted({int(line.split("Stage ")[1].split(":")[0]) for line in stderr.splitlines() if ") Stage " in line})


def test_stage_selection_dry_run(recipe):
    out = run_recipe(recipe, "--stage", "3", "--stop_stage", "4", "--dry_run", "true")
    assert out.returncode == 0, out.stderr
    assert stages_run(out.stderr) == [3, 4]
    assert "espnet2.bin.tokenize_text" in out.stderr and "espnet2.bin.gan_codec_train" in out.stderr
    assert "espnet2.bin.launch" in out.stderr and "--resume true" in out.stderr
    assert "tts_train" not in out.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()  # a dry run writes nothing


def test_all_stages_dry_run_and_skips(recipe):
    out = run_recipe(recipe, "--dry_run", "true", "--ngpu", "2")
    assert out.returncode == 0, out.stderr
    assert stages_run(out.stderr) == list(range(1, 10))
    for piece in ("local/data.sh --dataset mini", "espnet_kalle.recipe.format_data", "kalle-extract-latents",
                  "--speaker-mel", "espnet2.bin.tts_train", "espnet_kalle.pretrained.pack",
                  "espnet_kalle.recipe.decode synth", "kalle-score", "--ngpu 2"):
        assert piece in out.stderr, piece
    out = run_recipe(recipe, "--dry_run", "true", "--skip_train", "true", "--skip_eval", "true")
    assert stages_run(out.stderr) == [1, 2, 3, 7]


def dry_run_stage(recipe: Path, stage: int, *args: str) -> str:
    """The commands one stage would run (stderr of --dry_run); the run must succeed."""
    out = run_recipe(recipe, "--stage", str(stage), "--stop_stage", str(stage), "--dry_run", "true", *args)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_cpu_training_gets_the_cores_gpu_training_keeps_path_sh(recipe):
    cores = len(os.sched_getaffinity(0))  # what nproc counts
    printed = dry_run_stage(recipe, 4)
    assert f"env OMP_NUM_THREADS={cores} MKL_NUM_THREADS={cores}" in printed and "espnet2.bin.launch" in printed
    assert "env OMP_NUM_THREADS=3 MKL_NUM_THREADS=3" in dry_run_stage(recipe, 4, "--train_nthreads", "3")
    assert "OMP_NUM_THREADS" not in dry_run_stage(recipe, 4, "--ngpu", "1")


def test_speaker_ids_reach_the_lm_when_asked(recipe):
    """--use_sid true writes ESPnet's spk2sid/utt2sid and gives the LM trainer 'sids' (other-utterance speaker)."""
    printed = dry_run_stage(recipe, 6, "--use_sid", "true")
    assert "espnet_kalle.recipe.speaker_ids --train dump/raw/train" in printed
    for dset in ("train", "dev"):
        assert f"dump/raw/{dset}/utt2sid\\,sids\\,text_int" in printed  # printed %q-quoted
    assert "sids" not in dry_run_stage(recipe, 6, "--use_sid", "false")
    # auto (the default) asks the LM config: the paper's same_utterance needs no ids, other_utterance does
    assert "sids" not in dry_run_stage(recipe, 6)
    other = recipe / "lm_other_utterance.yaml"
    other.write_text(yaml.safe_dump({"tts": "kalle", "tts_conf": {"speaker_reference": "other_utterance"}}))
    assert "dump/raw/train/utt2sid\\,sids\\,text_int" in dry_run_stage(recipe, 6, "--lm_config", str(other))


def test_phoneme_tokens_get_their_own_token_list_and_stats(recipe):
    """Phoneme lists and text shapes depend on the g2p (phn_<g2p>), and stage 3 phonemizes through the wrapper
    (offline espeak-ng, no NLTK download); characters keep data/token_list/char."""
    phn = ("--token_type", "phn", "--g2p", "espeak_ng_english_us_vits")
    printed = dry_run_stage(recipe, 3, *phn)
    assert "-m espnet_kalle.run -m espnet2.bin.tokenize_text --token_type phn" in printed
    assert "--output data/token_list/phn_espeak_ng_english_us_vits/tokens.txt" in printed
    assert "--g2p espeak_ng_english_us_vits" in printed
    printed = dry_run_stage(recipe, 6, *phn)
    assert "--token_list data/token_list/phn_espeak_ng_english_us_vits/tokens.txt" in printed
    assert "exp/lm_stats_phn_espeak_ng_english_us_vits/train/text_shape" in printed
    assert "--output data/token_list/char/tokens.txt" in dry_run_stage(recipe, 3)


def test_bad_options_fail_early(recipe):
    for args, message in ((["--stage_x", "1"], "unknown option"), (["--dry_run", "maybe"], "true or false"),
                          (["extra_arg"], "unexpected argument"),
                          (["--num_nodes", "2", "--dry_run", "true"], "cmd_backend=slurm"),
                          (["--use_sid", "sometimes"], "--use_sid must be auto, true or false"),
                          (["--train_nthreads", "two"], "--train_nthreads must be a whole number"),
                          (["--token_type", "phn", "--dry_run", "true"], "--token_type phn needs a --g2p")):
        out = run_recipe(recipe, *args)
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr[-500:])


# ------------------------------------------------------------------------------------------- conf/*.yaml
CONFS = sorted(p for p in (RECIPE / "conf").rglob("*.yaml"))


def kind(path: Path) -> str:
    conf = yaml.safe_load(path.read_text())
    return "codec" if "codec" in conf else "tts" if "tts" in conf else "decode"


def test_conf_dir_is_complete():
    names = {p.relative_to(RECIPE / "conf").as_posix() for p in CONFS}
    for required in ("train_flowvae.yaml", "train_kalle.yaml", "decode.yaml", "tuning/train_kalle_mini.yaml",
                     "tuning/train_kalle_paper.yaml", "tuning/train_kalle_debug.yaml",
                     "tuning/train_flowvae_debug.yaml"):
        assert required in names, required
    for debug in (p for p in CONFS if p.stem.endswith("_debug") and kind(p) != "decode"):
        conf = yaml.safe_load(debug.read_text())
        assert conf["max_epoch"] == 1 and conf["num_iters_per_epoch"] == 1, debug


@pytest.fixture(scope="module")
def token_list(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text("\n".join(["<blank>", "<unk>", "<space>", *"abcdefghijklmnopqrstuvwxyz.,'?!", "<sos/eos>"]))
    return path


@pytest.mark.parametrize("conf", [p for p in CONFS if "paper" not in p.name], ids=lambda p: p.name)
def test_conf_dry_run(conf, token_list, tmp_path):
    """ESPnet's own --dry_run (parse, build the model, write config.yaml) in-process, as the recipe calls it."""
    from espnet_kalle import register

    register()
    k = kind(conf)
    if k == "decode":
        from espnet_kalle.recipe.decode import load_config

        import inspect

        from espnet_kalle.synthesizer import KalleSynthesizer

        loaded = load_config(conf)
        assert set(loaded) == {"systems", "synthesize", "clone", "adapt"}
        for section in ("synthesize", "clone", "adapt"):  # every option is an argument of the API it goes to
            assert set(loaded[section]) <= set(inspect.signature(getattr(KalleSynthesizer, section)).parameters)
        return
    if k == "codec":
        from espnet2.tasks.gan_codec import GANCodecTask as Task

        cmd = []
    else:
        from espnet2.tasks.tts import TTSTask as Task

        tts_conf = yaml.safe_load(conf.read_text())["tts_conf"]
        odim = 2 * tts_conf["latent_dim"] + (640 if tts_conf.get("speaker_conf") else 0)
        cmd = ["--token_type", "char", "--token_list", str(token_list), "--odim", str(odim), "--cleaner", "tacotron"]
    Task.main(cmd=["--config", str(conf), "--output_dir", str(tmp_path), "--dry_run", "true", "--ngpu", "0", *cmd])
    assert (tmp_path / "config.yaml").is_file()


def test_paper_lm_config_is_llama_3_2_1b_shaped(token_list, tmp_path, monkeypatch):
    """Parsed by ESPnet's TTS parser; the 1B backbone is built on the meta device (no memory), the rest for real."""
    from espnet2.tasks.tts import TTSTask

    import espnet_kalle.lm.model as lm_model
    from espnet_kalle import register

    register(["tts"])
    conf = RECIPE / "conf/tuning/train_kalle_paper.yaml"
    args = TTSTask.get_parser().parse_args(
        ["--config", str(conf), "--token_type", "char", "--token_list", str(token_list), "--odim", str(2 * 512 + 640),
         "--output_dir", str(tmp_path)])
    assert args.use_amp and args.grad_clip == 1.0 and args.scheduler == "cosineannealingwarmuprestarts"
    build = lm_model.build_llama

    def on_meta(*a, **kw):
        with torch.device("meta"):
            return build(*a, **kw)

    monkeypatch.setattr(lm_model, "build_llama", on_meta)
    model = TTSTask.build_model(args)
    llama = model.tts.lm.backbone
    c = llama.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.intermediate_size) == (2048, 16, 32, 8, 64, 8192)
    assert c.rope_theta == 500000.0 and c.rope_scaling["rope_type"] == "llama3" and c.rope_scaling["factor"] == 32.0
    non_embedding = sum(p.numel() for n, p in llama.named_parameters() if "embed_tokens" not in n)
    assert non_embedding == 973_146_112  # Llama-3.2-1B without its 128k-token embedding table
    lm = model.tts.lm
    assert tuple(lm.audio_linear.weight.shape) == (2048, 512)  # the release's audio_linear 512 -> 2048
    # ESPnet's scheduler registry has the warmup + cosine scheduler the config names.
    from espnet2.tasks.abs_task import scheduler_classes

    assert args.scheduler in scheduler_classes
