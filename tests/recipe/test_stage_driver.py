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


# Stand-ins for the schedulers' submit commands: record the flags, then run every array task of the script in turn
# (as sbatch --wait / qsub -sync y would, blocking), with the scheduler's task-id variable set.
FAKE_SBATCH = """#!/usr/bin/env bash
echo "$@" > "$(dirname "${@: -1}")/sbatch.args"
range=1-1
while (( $# > 1 )); do case "$1" in --array) range="${2%%%*}"; shift 2 ;; *) shift ;; esac; done
rc=0
for (( i=${range%-*}; i<=${range#*-}; i++ )); do SLURM_ARRAY_TASK_ID=$i bash "$1" || rc=1; done
exit $rc
"""
FAKE_QSUB = """#!/usr/bin/env bash
echo "$@" > "$(dirname "${@: -1}")/qsub.args"
range=1:1
while (( $# > 1 )); do case "$1" in -t) range="$2"; shift 2 ;; *) shift ;; esac; done
rc=0
for (( i=${range%:*}; i<=${range#*:}; i++ )); do SGE_TASK_ID=$i bash "$1" || rc=1; done
exit $rc
"""


@pytest.fixture
def fake_schedulers(tmp_path):
    """PATH with fake sbatch and qsub first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("qsub", FAKE_QSUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{recipe_env()['PATH']}"}


def test_slurm_launcher_turns_options_into_sbatch_flags_by_conf(tmp_path, fake_schedulers):
    """utils/slurm.pl with ESPnet's conf/slurm.conf: --gpu/--mem/--time/--num_threads/--name become the conf's
    sbatch flags; the job blocks (--wait), runs as an array, and fails when a task fails."""
    conf = f"--config {RECIPE}/conf/slurm.conf"
    out = bash(f"{UTILS}/slurm.pl {conf} --gpu 2 --mem 8G --time 1:00:00 --num_threads 3 --name train "
               "--max_jobs_run 1 JOB=1:2 log/s.JOB.log echo task JOB", tmp_path, fake_schedulers)
    assert out.returncode == 0, out.stderr
    for j in (1, 2):
        log = (tmp_path / f"log/s.{j}.log").read_text()
        assert f"task {j}\n" in log and log.splitlines()[-1].startswith("# Ended (code 0)")
    args = (tmp_path / "log/q/sbatch.args").read_text().split()
    text = " ".join(args)
    for flags in ("-p gpu --gres=gpu:2 -c 2", "--mem-per-cpu 8G", "--time 1:00:00", "--cpus-per-task 3",
                  "--job-name train", "--array 1-2%1", "--wait", "--export=PATH --ntasks-per-node=1"):
        assert flags in text, (flags, text)
    out = bash(f"{UTILS}/slurm.pl {conf} log/cpu.log echo on cpu", tmp_path, fake_schedulers)
    assert out.returncode == 0 and "-p cpu" in (tmp_path / "log/q/sbatch.args").read_text()  # default gpu=0
    out = bash(f"{UTILS}/slurm.pl {conf} JOB=1:2 log/f.JOB.log test JOB -eq 1", tmp_path, fake_schedulers)
    assert out.returncode != 0 and "1 / 2 failed, log is in log/f.2.log" in out.stderr
    out = bash(f"{UTILS}/slurm.pl {conf} --partition x log/p.log true", tmp_path, fake_schedulers)
    assert out.returncode != 0 and "option --partition x is not described in" in out.stderr
    # espnet2.bin.launch recognises the Slurm launcher by the file name slurm.pl.
    assert (UTILS / "slurm.pl").resolve() == (UTILS / "slurm.sh").resolve()


def test_grid_engine_launcher_turns_options_into_qsub_flags_by_conf(tmp_path, fake_schedulers):
    """utils/queue.pl with ESPnet's conf/queue.conf (qsub -sync y, array -t a:b, $SGE_TASK_ID)."""
    conf = f"--config {RECIPE}/conf/queue.conf"
    out = bash(f"{UTILS}/queue.pl {conf} --gpu 1 --mem 2G --num_threads 4 --max_jobs_run 2 --name lm "
               "JOB=1:3 log/q.JOB.log echo task JOB", tmp_path, fake_schedulers)
    assert out.returncode == 0, out.stderr
    for j in (1, 2, 3):
        assert f"task {j}\n" in (tmp_path / f"log/q.{j}.log").read_text()
    text = (tmp_path / "log/q/qsub.args").read_text()
    for flags in ("-v PATH -cwd -S /bin/bash -j y -l arch=*64*", "-l gpu=1 -q g.q", "-l mem_free=2G,ram_free=2G",
                  "-pe smp 4", "-tc 2", "-N lm", "-t 1:3", "-sync y"):
        assert flags in text, (flags, text)
    out = bash(f"{UTILS}/queue.pl {conf} log/cpu.log true", tmp_path, fake_schedulers)
    assert out.returncode == 0 and "-q g.q" not in (tmp_path / "log/q/qsub.args").read_text()
    out = bash(f"{UTILS}/queue.pl {conf} JOB=1:2 log/f.JOB.log test JOB -eq 2", tmp_path, fake_schedulers)
    assert out.returncode != 0 and "log is in log/f.1.log" in out.stderr
    assert (UTILS / "queue.pl").resolve() == (UTILS / "queue.sh").resolve()
    assert (UTILS / "run.pl").resolve() == (UTILS / "run.sh").resolve()


@pytest.mark.parametrize("backend,launcher", [("local", "run.pl"), ("slurm", "slurm.pl"), ("sge", "queue.pl")])
def test_cmd_sh_switches_every_launcher_with_one_setting(backend, launcher, tmp_path):
    """cmd.sh as ESPnet's: cmd_backend picks the launcher of train_cmd, cuda_cmd and decode_cmd together."""
    out = bash(f"cmd_backend={backend}; . {RECIPE}/cmd.sh; echo $train_cmd,$cuda_cmd,$decode_cmd", tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"{launcher},{launcher},{launcher}", out
    out = bash(f"cmd_backend=pbs; . {RECIPE}/cmd.sh", tmp_path)
    assert out.returncode != 0 and "unknown cmd_backend 'pbs'" in out.stderr


# ------------------------------------------------------------------------------------------------- kalle.sh
@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return copy_recipe(tmp_path_factory.mktemp("recipe") / "tts1")


def run_recipe(recipe: Path, *args: str):
    return run_recipe_env(recipe, None, *args)


def run_recipe_env(recipe: Path, env, *args: str):
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=recipe_env(env), capture_output=True, text=True,
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
    # continuation pairs need one speaker per pair: ids when the LM has a speaker encoder, none without one
    joined = {"tts": "kalle", "tts_conf": {"continuation_share": 0.5, "speaker_conf": {"speaker_dim": 8}}}
    (recipe / "lm_joined.yaml").write_text(yaml.safe_dump(joined))
    assert "utt2sid\\,sids" in dry_run_stage(recipe, 6, "--lm_config", str(recipe / "lm_joined.yaml"))
    joined["tts_conf"].pop("speaker_conf")
    (recipe / "lm_joined_1voice.yaml").write_text(yaml.safe_dump(joined))
    assert "sids" not in dry_run_stage(recipe, 6, "--lm_config", str(recipe / "lm_joined_1voice.yaml"))


def test_guided_attention_on_durations_gets_the_recipes_durations(recipe):
    """An LM config that guides attention along durations makes stage 6 write them from the phone timings and give
    them to the trainer (training only); the diagonal needs none."""
    for target, wanted in (("durations", True), ("diagonal", False)):
        conf = {"tts": "kalle", "tts_conf": {"guided_attention": {"layers": [1], "target": target}}}
        (recipe / f"lm_guided_{target}.yaml").write_text(yaml.safe_dump(conf))
        printed = dry_run_stage(recipe, 6, "--lm_config", str(recipe / f"lm_guided_{target}.yaml"))
        assert ("espnet_kalle.recipe.token_durations --timings dump/raw/train/phone_timings" in printed) == wanted
        assert ("train/durations\\,durations\\,text_int" in printed) == wanted
        assert "valid_data_path_and_name_and_type" in printed and "valid/durations" not in printed


def test_phoneme_tokens_get_their_own_token_list_and_stats(recipe):
    """Phoneme lists and text shapes depend on the cleaner and g2p (tts.sh: phn_<cleaner>_<g2p>), and stage 3
    phonemizes through the wrapper (offline espeak-ng, no NLTK download); characters keep their own list."""
    phn = ("--token_type", "phn", "--g2p", "espeak_ng_english_us_vits")
    printed = dry_run_stage(recipe, 3, *phn)
    assert "-m espnet_kalle.run -m espnet2.bin.tokenize_text --token_type phn" in printed
    assert "--output data/token_list/phn_tacotron_espeak_ng_english_us_vits/tokens.txt" in printed
    assert "--g2p espeak_ng_english_us_vits" in printed
    printed = dry_run_stage(recipe, 6, *phn)
    assert "--token_list data/token_list/phn_tacotron_espeak_ng_english_us_vits/tokens.txt" in printed
    assert "exp/lm_stats_train_flowvae_raw_mel_phn_tacotron_espeak_ng_english_us_vits/train/text_shape" in printed
    assert "--output data/token_list/char_tacotron/tokens.txt" in dry_run_stage(recipe, 3)


# Default names, as tts.sh and codec.sh build them from run.sh's configs and front end.
CODEC_EXP = "exp/codec_train_flowvae_raw"
LM_EXP = "exp/lm_train_kalle_train_flowvae_raw_char_tacotron"


def exp_dirs(printed: str) -> tuple:
    """(LM exp dir, decoding dir) that a dry run of stage 6 and/or 8 names (None: not in it)."""
    lm = printed.split(") Stage 6: ")[1].split("training -> ")[1].split("\n")[0] if ") Stage 6: " in printed else None
    dec = printed.split("/<system>")[0].split(" -> ")[-1] if "/<system>" in printed else None
    return lm, dec


def test_experiment_dirs_are_named_from_config_and_front_end(recipe):
    """tts.sh's naming: <config>_<feats>_<token_type>[_<cleaner>][_<g2p>][<args>]; runs that differ in the front
    end, the configs, the codec or the training options get different dirs (and token lists, stats, latents)."""
    printed = dry_run_stage(recipe, 4)
    assert f"training -> {CODEC_EXP}\n" in printed
    base = dry_run_stage(recipe, 3, "--stop_stage", "8")
    assert exp_dirs(base) == (LM_EXP, f"{LM_EXP}/decode_valid.loss.ave/test")
    assert "-> data/token_list/char_tacotron/tokens.txt" in base  # tts.sh: token_list/<type>[_<cleaner>][_<g2p>]
    assert "--out-dir dump/latents/train_flowvae_raw_mel/train" in base
    assert f"collect_stats -> exp/lm_stats_train_flowvae_raw_mel_char_tacotron, training -> {LM_EXP}" in base
    assert f"--out {LM_EXP}/packed_valid.loss.ave --voices" in base
    variants = {
        "cleaner": ["--cleaner", "none"],
        "phn": ["--token_type", "phn", "--g2p", "espeak_ng_english_us_vits"],
        "g2p": ["--token_type", "phn", "--g2p", "espeak_ng_english_us"],
        "lm config": ["--lm_config", "conf/tuning/train_kalle_mini_melle.yaml"],
        "lm args": ["--lm_args", "--max_epoch 3"],
        "codec": ["--codec_config", "conf/tuning/train_flowvae_debug.yaml"],
        "codec model": ["--codec_model", "3epoch.pth"],
    }
    names = {"base": exp_dirs(base)[0]}
    for what, args in variants.items():
        names[what] = exp_dirs(dry_run_stage(recipe, 6, *args))[0]
    assert len(set(names.values())) == len(names), names
    assert names["phn"] == "exp/lm_train_kalle_train_flowvae_raw_phn_tacotron_espeak_ng_english_us_vits"
    assert names["cleaner"] == "exp/lm_train_kalle_train_flowvae_raw_char"
    assert names["lm args"] == f"{LM_EXP}_max_epoch3"
    assert names["codec model"] == "exp/lm_train_kalle_train_flowvae_raw_3epoch_char_tacotron"
    assert exp_dirs(dry_run_stage(recipe, 6, "--lm_tag", "mine"))[0] == "exp/lm_mine"  # as tts.sh's --tag


def test_decoding_dirs_carry_an_inference_tag(recipe):
    """tts.sh's inference_tag: <decode config>[<decode_args>]_<model>, or --inference_tag; stage 9 scores there."""
    def dec(*args):
        return exp_dirs(dry_run_stage(recipe, 8, *args))[1]

    assert dec() == f"{LM_EXP}/decode_valid.loss.ave/test"
    assert dec("--decode_config", "conf/tuning/decode_debug.yaml") == f"{LM_EXP}/decode_debug_valid.loss.ave/test"
    assert dec("--decode_args", "--seed 3") == f"{LM_EXP}/decode_seed3_valid.loss.ave/test"
    assert dec("--lm_model", "valid.loss.best.pth") == f"{LM_EXP}/decode_valid.loss.best/test"
    assert dec("--inference_tag", "mine") == f"{LM_EXP}/mine/test"
    assert f"--out {LM_EXP}/mine/test/scoring" in dry_run_stage(recipe, 9, "--inference_tag", "mine")


def fake_done(root: Path, rel: str) -> None:
    (root / rel).mkdir(parents=True, exist_ok=True)
    (root / rel / ".done").write_text("finished\n")


def test_finished_work_of_another_front_end_or_decode_config_is_not_reused(tmp_path):
    """Not a dry run: the .done stamps of one run are found by the same settings only. The other settings start
    their own work (here they stop at once: this recipe dir has no latents and no packed model)."""
    root = copy_recipe(tmp_path / "tts1")
    fake_done(root, LM_EXP)
    fake_done(root, f"{LM_EXP}/decode_valid.loss.ave/test")
    same = run_recipe(root, "--stage", "6", "--stop_stage", "6")
    assert same.returncode == 0 and f"{LM_EXP} is trained" in same.stderr, same.stderr[-2000:]
    for args in (["--token_type", "phn", "--g2p", "espeak_ng_english_us_vits"], ["--cleaner", "none"]):
        other = run_recipe(root, "--stage", "6", "--stop_stage", "6", *args)
        assert other.returncode != 0 and "is trained" not in other.stderr, other.stderr[-2000:]
        assert "run stages 1-5 first" in other.stderr  # it went for its own training
    same = run_recipe(root, "--stage", "8", "--stop_stage", "8")
    assert same.returncode == 0 and f"{LM_EXP}/decode_valid.loss.ave/test is complete" in same.stderr
    other = run_recipe(root, "--stage", "8", "--stop_stage", "8", "--decode_config", "conf/tuning/decode_debug.yaml")
    assert other.returncode != 0 and "is complete" not in other.stderr
    assert f"-m espnet_kalle.recipe.decode prepare --model_dir {LM_EXP}/packed_valid.loss.ave" in other.stderr
    assert f"--out_dir {LM_EXP}/decode_debug_valid.loss.ave/test" in other.stderr


def test_packing_a_run_that_has_not_averaged_says_which_checkpoint_to_pass(tmp_path):
    """Stage 7 packs ESPnet's average by default (valid.loss.ave.pth, as tts.sh's inference_model); a run stopped
    before its --max_epoch has none, and the error names the way out instead of a traceback from the packer."""
    root = copy_recipe(tmp_path / "tts1")
    fake_done(root, LM_EXP)
    (root / LM_EXP / "latest.pth").write_bytes(b"")
    out = run_recipe(root, "--stage", "7", "--stop_stage", "7")
    assert out.returncode != 0, out.stderr[-2000:]
    assert f"missing {LM_EXP}/valid.loss.ave.pth" in out.stderr and "--lm_model latest.pth" in out.stderr
    assert "espnet_kalle.pretrained.pack" not in out.stderr and not (root / LM_EXP / "packed_valid.loss.ave").exists()


def test_gpu_inference_goes_through_cuda_cmd_with_a_gpu(recipe, tmp_path):
    """--gpu_inference true: stage 5 (latents) and stage 8 (decoding) use cuda_cmd --gpu 1 (a scheduler then
    reserves a GPU) and --device cuda; otherwise decode_cmd --gpu 0 and the CPU. Launchers told apart by name."""
    (recipe / "cmd.sh").rename(recipe / "cmd.sh.orig")
    try:
        (recipe / "cmd.sh").write_text('export train_cmd=train.pl cuda_cmd=cuda.pl decode_cmd=decode.pl\n')
        gpu = dry_run_stage(recipe, 5, "--stop_stage", "8", "--gpu_inference", "true")
        cpu = dry_run_stage(recipe, 5, "--stop_stage", "8")
    finally:
        (recipe / "cmd.sh").unlink()
        (recipe / "cmd.sh.orig").rename(recipe / "cmd.sh")

    def launched(printed, tool):
        return [line for line in printed.splitlines() if line.startswith("+ ") and tool in line]

    for printed, cmd, device in ((gpu, "cuda.pl --gpu 1", "cuda"), (cpu, "decode.pl --gpu 0", "cpu")):
        for tool in ("kalle-extract-latents", "espnet_kalle.recipe.decode prepare", "espnet_kalle.recipe.decode synth"):
            lines = launched(printed, tool)
            assert lines and all(line.startswith(f"+ {cmd} ") and f"--device {device}" in line for line in lines), (
                tool, lines)


def test_sge_backend_names_training_jobs_without_slashes(recipe):
    """tts.sh gives queue.pl the exp dir's name as the job name (SGE refuses "/"), the log path to the others."""
    out = run_recipe_env(recipe, {"cmd_backend": "sge"}, "--stage", "6", "--stop_stage", "6", "--dry_run", "true")
    assert out.returncode == 0, out.stderr
    assert f"--cmd queue.pl\\ --name\\ {LM_EXP.split('/')[1]} " in out.stderr
    out = run_recipe_env(recipe, {"cmd_backend": "slurm"}, "--stage", "6", "--stop_stage", "6", "--dry_run", "true",
                         "--num_nodes", "2")
    assert out.returncode == 0 and f"--cmd slurm.pl\\ --name\\ {LM_EXP}/train.log " in out.stderr


def test_upload_stage_dry_run_and_its_options(recipe):
    printed = dry_run_stage(recipe, 10, "--skip_upload_hf", "false", "--hf_repo", "me/kalle-mini",
                            "--hf_dry_run", "true")
    line = next(x for x in printed.splitlines() if "espnet_kalle.recipe.upload_hf" in x)
    for piece in (f"--model_dir {LM_EXP}/packed_valid.loss.ave --out exp/hf_me_kalle-mini",
                  "--repo me/kalle-mini", "--data_dirs dump/raw/train dump/raw/dev dump/raw/test",
                  f"--results_dir {LM_EXP}/decode_valid.loss.ave",
                  f"--command_file {CODEC_EXP}/run.sh", f"--command_file {LM_EXP}/run.sh", " --dry_run"):
        assert piece in line, (piece, line)
    assert "Stage 10" not in dry_run_stage(recipe, 10)  # skipped by default, as tts.sh's --skip_upload_hf true
    out = run_recipe(recipe, "--stage", "10", "--skip_upload_hf", "false", "--dry_run", "true")
    assert out.returncode != 0 and "needs --hf_repo" in out.stderr


def test_bad_options_fail_early(recipe):
    for args, message in ((["--stage_x", "1"], "unknown option"), (["--dry_run", "maybe"], "true or false"),
                          (["extra_arg"], "unexpected argument"),
                          (["--num_nodes", "2", "--dry_run", "true"], "cmd_backend=slurm"),
                          (["--use_sid", "sometimes"], "--use_sid must be auto, true or false"),
                          (["--train_nthreads", "two"], "--train_nthreads must be a whole number"),
                          (["--token_type", "phn", "--dry_run", "true"], "--token_type phn needs a --g2p"),
                          (["--lang", "English", "--dry_run", "true"], "--lang English: expected a language code"),
                          (["--decode_config", "conf/nope.yaml"], "--decode_config conf/nope.yaml: no such file")):
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
        import inspect

        from espnet_kalle.recipe.decode import load_config
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
