"""The prompt templates, as plain text files anyone can edit.

Placeholders are written ``{name}``; only the names a template documents are replaced, so
other braces in the text stay as they are. Files:

- ``system.txt`` — the system message for every call (content is data, not instructions).
- ``generate_basic.txt`` — Template_b(c, Φ(c)): ``{content}``, ``{candidates}``, ``{task}``.
- ``generate_retrieval.txt`` — Template_r(c, Φ(c), R(c)): adds ``{examples}``, ``{knowledge}``.
- ``judge.txt`` — Template_c(c, t): ``{examples}`` (earlier Yes/No judgments on similar items,
  from the retrieved samples), ``{content}``, ``{tag}``, ``{tag_description}``. The content comes
  first and the tag last, so the model's KV cache for the content is reused across tags.

Set ``LLM4TAG_PROMPTS_DIR`` to a folder with your own copies to override them.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@lru_cache(maxsize=32)
def _read(directory: str, name: str) -> str:
    return (Path(directory) / f"{name}.txt").read_text(encoding="utf-8").strip()


def load_prompt(name: str) -> str:
    directory = os.environ.get("LLM4TAG_PROMPTS_DIR") or str(PROMPTS_DIR)
    path = Path(directory) / f"{name}.txt"
    if not path.is_file():
        path = PROMPTS_DIR / f"{name}.txt"
        directory = str(PROMPTS_DIR)
    return _read(directory, name)


def render_prompt(name: str, **values: str) -> str:
    """Fill a template's ``{placeholders}``; unknown names are left as written."""
    template = load_prompt(name)
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)
