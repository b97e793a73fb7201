"""Text front end: sentence splitting and tokenisation the way the model was trained (an ESPnet token list, or a
Hugging Face tokenizer for the released model; ``build_tokenizer`` picks from the config).

The tokeniser repeats ESPnet's TTS preprocessing (cleaner -> tokenizer -> token ids) from a train config, so
inference sees exactly the ids training saw, without importing ESPnet's task machinery (~10 s).
Characters the model has no token for are transliterated to ASCII first, then dropped with a warning;
a text left with nothing speakable is an error, never a silent empty waveform.
"""

from __future__ import annotations

import logging
import re
from typing import Any, List, Mapping, Sequence

from espnet_kalle.errors import InputError

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?;])[\"')\]]*\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,:])\s+")


class TextError(InputError):
    """Text that cannot be spoken (empty, or nothing the model knows how to say)."""


def split_sentences(text: str, max_chars: int = 300) -> List[str]:
    """Sentences of at most ``max_chars``; longer ones are cut at commas, then at spaces."""
    pieces: List[str] = []
    for sentence in _SENTENCE_END.split(" ".join(text.split())):
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        current = ""
        for part in _CLAUSE_BREAK.split(sentence):
            for word in part.split(" "):
                candidate = f"{current} {word}".strip()
                if len(candidate) > max_chars and current:
                    pieces.append(current)
                    candidate = word[:max_chars]
                current = candidate
            if len(current) >= max_chars // 2:
                pieces.append(current)
                current = ""
        if current:
            pieces.append(current)
    return pieces


class Tokenizer:
    """ESPnet-compatible text -> ids for a trained "kalle" config (token_list, token_type, cleaner, g2p)."""

    def __init__(
        self,
        token_list: Sequence[str],
        token_type: str = "char",
        cleaner: Any = None,
        g2p: Any = None,
        bpemodel: Any = None,
        non_linguistic_symbols: Any = None,
    ):
        from espnet2.text.cleaner import TextCleaner
        from espnet2.text.token_id_converter import TokenIDConverter

        self.token_list = list(token_list)
        self.cleaner = TextCleaner(cleaner)
        if token_type == "char" and not g2p:
            # ESPnet's build_tokenizer imports g2p_en, which tries to download NLTK data: avoid it when unused.
            from espnet2.text.char_tokenizer import CharTokenizer

            self.tokenizer = CharTokenizer(non_linguistic_symbols=non_linguistic_symbols)
        else:
            from espnet_kalle.g2p import prepare_g2p

            prepare_g2p(g2p)  # before ESPnet's import of g2p_en, whose import starts an NLTK download

            from espnet2.text.build_tokenizer import build_tokenizer

            self.tokenizer = build_tokenizer(
                token_type=token_type, bpemodel=bpemodel, non_linguistic_symbols=non_linguistic_symbols,
                g2p_type=g2p,
            )
        self.converter = TokenIDConverter(token_list=self.token_list, unk_symbol="<unk>")
        self.unk_id = self.token_list.index("<unk>") if "<unk>" in self.token_list else -1
        space = {" "} if "<space>" in self.token_list else set()
        self.known_chars = {t for t in self.token_list if len(t) == 1} | space
        self.token_type = token_type
        self.char_level = token_type == "char"
        self.sentence_end_ids = [i for i, t in enumerate(self.token_list) if t in (".", "!", "?")]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Tokenizer:
        return cls(
            config["token_list"], config.get("token_type", "char"), config.get("cleaner"), config.get("g2p"),
            config.get("bpemodel"), config.get("non_linguistic_symbols"),
        )

    def _known_only(self, text: str) -> str:
        """Transliterate what the char vocabulary lacks, then drop what is still unknown (with a warning)."""
        if not self.char_level:
            return text
        if all(c in self.known_chars for c in text):
            return text
        from unidecode import unidecode

        out = []
        dropped = set()
        for c in text:
            if c in self.known_chars:
                out.append(c)
                continue
            for a in unidecode(c):
                if a in self.known_chars:
                    out.append(a)
                elif a.lower() in self.known_chars:
                    out.append(a.lower())
                elif a.upper() in self.known_chars:
                    out.append(a.upper())
                else:
                    dropped.add(c)
        if dropped:
            logger.warning("dropping characters the model cannot say: %s", "".join(sorted(dropped)))
        return "".join(out)

    @staticmethod
    def _speakable(token: str) -> bool:
        """A token that makes sound: letters or digits (phonemes included), not punctuation or <space>."""
        return not (token.startswith("<") and token.endswith(">")) and any(c.isalnum() for c in token)

    def __call__(self, text: str) -> List[int]:
        if not text or not text.strip():
            raise TextError("empty text: nothing to synthesize")
        cleaned = self._known_only(self.cleaner(text))
        tokens = self.tokenizer.text2tokens(cleaned)
        all_ids = self.converter.tokens2ids(tokens)
        ids = [i for i in all_ids if i != self.unk_id]
        if len(ids) < len(all_ids) and not self.char_level:  # a char model warned in _known_only already
            unknown = sorted({t for t, i in zip(tokens, all_ids) if i == self.unk_id})
            logger.warning("dropping %s tokens the model cannot say: %s", self.token_type, " ".join(unknown))
        if not any(self._speakable(self.token_list[i]) for i in ids):
            raise TextError(f"nothing speakable in {text[:80]!r}: no characters the model knows")
        return ids


class HFTokenizer:
    """Hugging Face tokenizer (the released model's Llama-3 tokenizer), same contract as ``Tokenizer``.

    Ids include the tokenizer's own BOS (the release feeds ``<|begin_of_text|>`` first); ``bos_id`` lets callers
    drop it from a target text that follows a prompt, as the released inference does.
    """

    def __init__(self, tokenizer_dir: Any):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.bos_id = self.tokenizer.bos_token_id
        self.special_ids = set(self.tokenizer.all_special_ids)
        vocab = self.tokenizer.get_vocab()
        self.sentence_end_ids = [vocab[t] for t in (".", "!", "?") if t in vocab]

    def token_id(self, token: str) -> int:
        """Id of a (special) token; KeyError when the tokenizer does not have it."""
        vocab = self.tokenizer.get_vocab()
        if token not in vocab:
            raise KeyError(f"the tokenizer has no token {token!r}")
        return int(vocab[token])

    def __call__(self, text: str) -> List[int]:
        if not text or not text.strip():
            raise TextError("empty text: nothing to synthesize")
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        content = [i for i in ids if i not in self.special_ids]
        if not any(c.isalnum() for c in self.tokenizer.decode(content)):
            raise TextError(f"nothing speakable in {text[:80]!r}")
        return ids


def build_tokenizer(config: Mapping[str, Any], model_dir: Any = None):
    """The tokenizer a model config names: ``token_type: hf`` + ``tokenizer_dir`` (relative to the model dir),
    else the ESPnet token list."""
    if config.get("token_type") != "hf":
        return Tokenizer.from_config(config)
    from pathlib import Path

    path = Path(config.get("tokenizer_dir") or "tokenizer")
    if not path.is_absolute() and model_dir is not None:
        path = Path(model_dir) / path
    if not path.is_dir():
        raise FileNotFoundError(
            f"Hugging Face tokenizer dir not found: {path} (copy the released Llama-3 tokenizer files there)"
        )
    return HFTokenizer(path)
