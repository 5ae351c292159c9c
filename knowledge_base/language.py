"""Is a text in a language the knowledge base's encoder reads?

The bundled encoder (MiniLM) was trained on English; a German or Finnish text is embedded as a
string of English word pieces and lands near whatever shares its letters. ``language_fit`` counts
the share of the text's words that simplemma's dictionaries know in one of the knowledge base's
``languages`` (``KnowledgeBaseConfig.languages``; offline, from its PyPI wheel, only the
dictionaries of those languages are loaded: about 20 MB for English). A text of at least
``MIN_WORDS`` words of which fewer than ``MIN_SHARE`` are known is in another language: recall
notes it and scales every confidence by ``FOREIGN_FACTOR``, so by default it gets no confident
tag (a person's verdict on that very text still decides). Measured on 500 test texts of each dev
set (banking77, hwu64, debtags, se_cooking): 6 of the 1,906 English texts of 4+ words fall under
the bar (0.3%); all 20 sentences in ten other languages of ``tests/data/other_languages.jsonl``
are over it (English share 0–0.5). Short texts (a query of two or three words) are not judged:
too few words to tell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_WORDS = 4
MIN_SHARE = 0.6
FOREIGN_FACTOR = 0.05
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


@dataclass(frozen=True)
class LanguageFit:
    share: float  # share of the words known in one of the languages (1.0 when not judged)
    words: int
    foreign: bool  # judged to be in another language


def language_fit(text: str, languages: tuple[str, ...] | list[str]) -> LanguageFit:
    """How much of ``text`` is in ``languages`` (no check when there are none)."""
    words = _WORD.findall(text or "")
    if not languages or len(words) < MIN_WORDS:
        return LanguageFit(1.0, len(words), False)
    from simplemma import in_target_language

    sample = " ".join(words[:200])  # enough to tell; a long document is not read whole
    share = float(in_target_language(sample, lang=tuple(languages)))
    return LanguageFit(round(share, 3), len(words), share < MIN_SHARE)


LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "fi": "Finnish",
    "sv": "Swedish",
    "da": "Danish",
    "nb": "Norwegian",
    "pl": "Polish",
    "ru": "Russian",
    "cs": "Czech",
}


def language_names(languages: tuple[str, ...] | list[str]) -> str:
    return ", ".join(LANGUAGE_NAMES.get(code, code) for code in languages)
