"""Stage 10 of the recipe: share a packed model on the Hugging Face Hub, as ESPnet's recipes do (tts.sh stage 10).

    python -m espnet_kalle.recipe.upload_hf --model_dir exp/lm_x/packed_latest --out exp/hf_user_kalle-mini \
        --repo user/kalle-mini --dataset mini --fs 16000 \
        --data_dirs dump/raw/train dump/raw/dev dump/raw/test --results_dir exp/lm_x/decode_latest --test_sets test \
        --command_file exp/codec_y/run.sh --command_file exp/lm_x/run.sh [--license cc-by-4.0] [--dry_run]

Stages the upload folder first: the packed model dir (model.yaml, lm/, codec/, voices/; what
``KalleSynthesizer.from_pretrained`` loads after ``huggingface_hub.snapshot_download``) and a model card README.md
with the Hub's metadata header (language from model.yaml's ``lang``, datasets, license, tags), the data the model
was trained and tested on, the scores of stage 9, the recipe commands and both configs. Then uploads the folder
with ``huggingface_hub`` (``create_repo`` + ``upload_folder``; a token from ``HF_TOKEN`` or ``hf auth login``).
``--dry_run`` stops after staging, so the card can be read before anything leaves the machine.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp
from espnet_kalle.languages import model_lang

CARD = "README.md"
ESPNET_URL = "https://github.com/espnet/espnet"  # the toolkit the recipe plugs into
PAPER = "arXiv:2412.16846"


def check_repo_id(repo: str) -> str:
    """``<user or org>/<name>``, as the Hub names model repos; a ValueError otherwise."""
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name or any(c.isspace() for c in repo):
        raise ValueError(f"--repo must be <user or org>/<name>, not {repo!r}")
    return repo


def data_summary(data_dir: Path, fs: int) -> Dict[str, object]:
    """Utterances, speakers and hours of a formatted data dir (wav.scp, utt2spk, utt2num_samples of stage 2)."""
    if not (data_dir / "wav.scp").is_file():
        raise FileNotFoundError(f"{data_dir}/wav.scp not found (a data dir of stage 2)")
    summary: Dict[str, object] = {"set": data_dir.name, "utterances": len(read_wav_scp(data_dir / "wav.scp"))}
    if (data_dir / "utt2spk").is_file():
        summary["speakers"] = len(set(read_kaldi_map(data_dir / "utt2spk").values()))
    if (data_dir / "utt2num_samples").is_file():
        samples = sum(int(n) for n in read_kaldi_map(data_dir / "utt2num_samples").values())
        summary["hours"] = round(samples / fs / 3600, 2)
    return summary


def _code_block(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def model_card(repo: str, model_dir: Path, dataset: str, data: Sequence[Dict[str, object]],
               results: Dict[str, Optional[str]], commands: Dict[str, str], license_id: str) -> str:
    """The README.md of the Hub repo (metadata header as in ESPnet's TEMPLATE_HF_Readme.md, then the body)."""
    if not (model_dir / "model.yaml").is_file():
        raise FileNotFoundError(f"{model_dir} is not a packed model dir (no model.yaml): run stage 7 first")
    meta = yaml.safe_load((model_dir / "model.yaml").read_text(encoding="utf-8"))
    lang = model_lang(meta)  # recorded at packing (kalle.sh --lang)
    voices = sorted(p.name.removesuffix(".voice.pt") for p in (model_dir / "voices").glob("*.voice.pt"))
    # The Hub's language metadata is an ISO 639 code: en_US -> en (the card's text keeps the full code).
    header = {"tags": ["espnet", "espnet-kalle", "kall-e", "audio", "text-to-speech"],
              "language": lang.replace("_", "-").split("-")[0],
              "datasets": [dataset], "license": license_id, "library_name": "espnet",
              "pipeline_tag": "text-to-speech"}
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             f"## espnet-kalle KALL-E model `{repo}`", "",
             f"A KALL-E text-to-speech model ({PAPER}: a Flow-VAE codec and a next-distribution LLaMA LM) trained "
             f"with the `egs/kalle/tts1` recipe of espnet-kalle, an [ESPnet]({ESPNET_URL}) plugin, on "
             f"`{dataset}` (language `{lang}`).", "",
             "### Use", "",
             _code_block("\n".join([
                 "from huggingface_hub import snapshot_download",
                 "from espnet_kalle import KalleSynthesizer",
                 "",
                 f'synth = KalleSynthesizer.from_pretrained(snapshot_download("{repo}"))',
                 'wav = synth.synthesize("Hello there.")  # float32 samples at synth.sample_rate']), "python"),
             "",
             "or `kalle-tts \"Hello there.\" -o hello.wav --model <the downloaded dir>`. Preset voices: "
             f"{', '.join(voices) or 'none (clone a voice from a prompt)'}.", "",
             "### Data", "",
             "|set|utterances|speakers|hours|", "|---|---|---|---|"]
    for d in data:
        lines.append(f"|{d['set']}|{d['utterances']}|{d.get('speakers', '-')}|{d.get('hours', '-')}|")
    lines += ["", "### Scores (stage 9)", ""]
    for test_set, text in results.items():
        if text is None:
            lines += [f"`{test_set}`: not scored (run stage 9 before uploading to report scores).", ""]
        else:
            body = text.split("\n", 1)[1] if text.startswith("# ") else text  # its title would outrank ours
            lines += [f"#### {test_set}", "", body.strip(), ""]
    lines += ["### Commands", "", "Run from `egs/kalle/tts1` of espnet-kalle; each script resumes its stage.", ""]
    for name, text in commands.items():
        lines += [f"`{name}`:", "", _code_block(text, "bash"), ""]
    for title, rel in (("LM config", meta["lm_config"]), ("Flow-VAE config", meta["codec_config"])):
        lines += [f"### {title}", "", "<details><summary>expand</summary>", "",
                  _code_block((model_dir / rel).read_text(encoding="utf-8"), "yaml"), "", "</details>", ""]
    lines += ["### Citing", "", _code_block("\n".join([
        "@article{xia2024kalle, title={{KALL-E}: Autoregressive Speech Synthesis with Next-Distribution Prediction},",
        "  author={Xia, Kangxiang and Zhu, Xinfa and Yao, Jixun and Tian, Wenjie and Li, Wenhao and Xie, Lei},",
        "  journal={arXiv preprint arXiv:2412.16846}, year={2024}}",
        "@inproceedings{hayashi2020espnet, title={{ESPnet-TTS}: Unified, reproducible, and integratable open source",
        "  end-to-end text-to-speech toolkit}, booktitle={Proc. ICASSP}, pages={7654--7658}, year={2020}}"]),
        "bibtex"), ""]
    return "\n".join(lines)


def stage_folder(model_dir: Path, out: Path, card: str) -> Path:
    """``out`` = a copy of the packed model dir + README.md (rebuilt from scratch: nothing stale is uploaded)."""
    if not (model_dir / "model.yaml").is_file():
        raise FileNotFoundError(f"{model_dir} is not a packed model dir (no model.yaml): run stage 7 first")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    (tmp / CARD).write_text(card, encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def push(folder: Path, repo: str, message: str) -> str:
    """Create the model repo if needed and upload the staged folder; the URL of the commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", commit_message=message)
    return str(getattr(info, "commit_url", info))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, required=True, help="packed model dir (stage 7)")
    p.add_argument("--out", type=Path, required=True, help="staging folder (replaced), e.g. exp/hf_<user>_<name>")
    p.add_argument("--repo", required=True, help="Hub model repo, <user or org>/<name>")
    p.add_argument("--dataset", required=True, help="corpus name (the card's datasets entry)")
    p.add_argument("--fs", type=int, default=16000, help="sample rate of the data dirs (for the hours)")
    p.add_argument("--data_dirs", type=Path, nargs="+", default=[], help="train, valid and test data dirs")
    p.add_argument("--results_dir", type=Path, help="decoding dir of stage 8-9: <dir>/<test set>/scoring/RESULTS.md")
    p.add_argument("--test_sets", nargs="*", default=[])
    p.add_argument("--command_file", type=Path, action="append", default=[], help="a run.sh the recipe wrote")
    p.add_argument("--license", default="cc-by-4.0", help="the Hub's license id (ESPnet's default: cc-by-4.0)")
    p.add_argument("--dry_run", action="store_true", help="stage the folder and stop before uploading")
    args = p.parse_args(argv)
    try:
        repo = check_repo_id(args.repo)
        data = [data_summary(d, args.fs) for d in args.data_dirs]
        results: Dict[str, Optional[str]] = {}
        for test_set in args.test_sets:
            path = args.results_dir / test_set / "scoring" / "RESULTS.md" if args.results_dir else None
            results[test_set] = path.read_text(encoding="utf-8") if path and path.is_file() else None
        commands = {str(f): f.read_text(encoding="utf-8") for f in args.command_file}
        card = model_card(repo, args.model_dir, args.dataset, data, results, commands, args.license)
        folder = stage_folder(args.model_dir, args.out, card)
    except (OSError, ValueError) as e:
        raise SystemExit(f"upload_hf: {e}") from e
    print(f"staged {folder} ({sum(1 for f in folder.rglob('*') if f.is_file())} files) for {repo}")
    for test_set, text in results.items():
        if text is None:
            print(f"upload_hf: warning: {test_set} has no stage 9 scores; the card says so")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    try:
        url = push(folder, repo, f"espnet-kalle recipe: {args.model_dir.name}")
    except Exception as e:  # network, authentication, permissions: huggingface_hub has no common base class
        raise SystemExit(f"upload_hf: uploading {folder} to {repo} failed: {type(e).__name__}: {e} "
                         "(the staged folder is kept; log in with 'hf auth login' or set HF_TOKEN, then rerun)") from e
    print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
