"""A 2-process DDP training step on CPU (gloo) through ESPnet's own distributed code path.

What runs: two ``python -m espnet_kalle.run -m espnet2.bin.tts_train`` processes with the options
``espnet2.bin.launch`` gives each rank when it starts one process per node without GPUs (its ``--host`` mode):
``--ngpu 0 --multiprocessing_distributed false --dist_rank R --dist_world_size 2 --dist_backend gloo`` and a shared-file
``--dist_init_method``. ESPnet's trainer then calls ``torch.distributed.init_process_group``, shards every batch across
the ranks (``batch[rank::world_size]``), wraps the model in ``DistributedDataParallel`` and all-reduces gradients and
stats. (ESPnet's *single-node* multi-process mode spawns one process per GPU, so on CPU the per-rank form is the way
in; on GPUs the recipe uses ``espnet2.bin.launch --ngpu N`` and the same trainer code.)

The check: one SGD step of the 2-rank run (one utterance per rank) gives exactly the weights of a 1-process step on
the whole batch of two, which holds only if the gradients were averaged across processes.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from conftest import recipe_env

LATENT = 8
TEXTS = {"utt_a": "hello world.", "utt_b": "good day to you.", "utt_c": "one two.", "utt_d": "a cat sat."}


def write_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, utts in (("train", ["utt_a", "utt_b"]), ("valid", ["utt_c", "utt_d"])):
        d = root / split
        d.mkdir(parents=True)
        texts, scp = [], []
        for utt in utts:
            # Equal frame counts (the loss is normalised per rank by its frames) and log_sigma = -30, so the
            # teacher-forcing samples mu + sigma * eps are mu on every rank whatever its random stream.
            feats = np.concatenate([rng.normal(size=(6, LATENT)), np.full((6, LATENT), -30.0)], 1).astype(np.float32)
            np.save(d / f"{utt}.npy", feats)
            texts.append(f"{utt} {TEXTS[utt]}\n")
            scp.append(f"{utt} {d / (utt + '.npy')}\n")
        (d / "text").write_text("".join(texts))
        (d / "feats.scp").write_text("".join(scp))
        (d / "text_shape").write_text("".join(f"{u} {len(TEXTS[u])}\n" for u in utts))
        (d / "speech_shape").write_text("".join(f"{u} 6,{2 * LATENT}\n" for u in utts))
    chars = sorted(set("".join(TEXTS.values())) - {" "})
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]) + "\n")
    conf = {
        "tts": "kalle",
        "tts_conf": {"latent_dim": LATENT, "lm_conf": {"hidden_size": 32, "num_layers": 2, "num_heads": 4,
                                                       "intermediate_size": 64, "max_position_embeddings": 256}},
        "normalize": None, "optim": "sgd", "optim_conf": {"lr": 0.5}, "batch_type": "unsorted", "batch_size": 2,
        "max_epoch": 1, "num_iters_per_epoch": 1, "num_workers": 0, "seed": 0, "use_tensorboard": False,
        "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1,
    }
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))


def train_cmd(root: Path, out: str):
    cmd = [sys.executable, "-m", "espnet_kalle.run", "-m", "espnet2.bin.tts_train", "--config", str(root / "conf.yaml"),
           "--token_type", "char", "--token_list", str(root / "tokens.txt"), "--cleaner", "none", "--g2p", "none",
           "--odim", str(2 * LATENT), "--output_dir", str(root / out)]
    for split in ("train", "valid"):
        d = root / split
        cmd += [f"--{split}_data_path_and_name_and_type", f"{d}/text,text,text",
                f"--{split}_data_path_and_name_and_type", f"{d}/feats.scp,speech,npy",
                f"--{split}_shape_file", f"{d}/text_shape", f"--{split}_shape_file", f"{d}/speech_shape"]
    return cmd


def test_two_rank_gloo_step_equals_single_process_step(tmp_path):
    write_data(tmp_path)
    env = recipe_env()
    init = tmp_path / "dist_init"
    procs = []
    for rank in (0, 1):
        cmd = train_cmd(tmp_path, "exp_ddp") + [
            "--ngpu", "0", "--multiprocessing_distributed", "false", "--local_rank", "none",
            "--dist_rank", str(rank), "--dist_world_size", "2", "--dist_backend", "gloo",
            "--dist_init_method", f"file://{init}",
        ]
        log = open(tmp_path / f"rank{rank}.log", "w")
        procs.append((subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    single = subprocess.run(train_cmd(tmp_path, "exp_single") + ["--ngpu", "0"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    for proc, log in procs:
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    logs = [(tmp_path / f"rank{r}.log").read_text() for r in (0, 1)]
    for rank, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, logs[rank][-3000:]
    assert single.returncode == 0, (single.stdout + single.stderr)[-3000:]

    # ESPnet tags rank 0's log lines with rank/world size in distributed mode (other ranks log warnings only).
    assert ":0/2] " in logs[0] and "The training was finished at 1 epochs" in logs[0]

    ddp = torch.load(tmp_path / "exp_ddp/1epoch.pth", map_location="cpu", weights_only=True)
    one = torch.load(tmp_path / "exp_single/1epoch.pth", map_location="cpu", weights_only=True)
    assert set(ddp) == set(one)
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], atol=2e-6, rtol=1e-5, msg=key)
    # ESPnet skips the update when the gradient norm is not finite: make sure a real step was taken everywhere.
    for log in logs + [single.stdout + single.stderr]:
        assert "Skipping updating" not in log and "grad norm is nan" not in log
