"""The prompt templates, as plain text files anyone can edit, and the functions that fill them.

Placeholders are written ``{name}``; only the names a template documents are replaced, so
other braces in the text stay as they are. Files:

- ``system.txt`` — the system message for every call (content is data, not instructions).
- ``generate_basic.txt`` — Template_b(c, Φ(c)): ``{content}``, ``{candidates}``, ``{task}``.
- ``generate_retrieval.txt`` — Template_r(c, Φ(c), R(c)): adds ``{examples}``, ``{knowledge}``.
- ``judge.txt`` — Template_c(c, t): ``{examples}`` (earlier Yes/No judgments on similar items,
  from the retrieved samples), ``{content}``, ``{tag}``, ``{tag_description}``. The content comes
  first and the tag last, so the model's KV cache for the content is reused across tags.

Set ``LLM4TAG_PROMPTS_DIR`` to a folder with your own copies to override them. A template is
read again only when its file changes.

``prompts.fill`` builds the generation and judgment prompts from plain arguments (no graph
state, no run configuration), so tagging and the training sets use the very same text.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from knowledge_base.settings import settings

PROMPTS_DIR = Path(__file__).parent
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_cache: dict[Path, tuple[int, str]] = {}
_lock = threading.Lock()


def template_path(name: str) -> Path:
    """The file a template is read from: the override folder's copy when it has one."""
    directory = settings().prompts_dir
    if directory:
        path = Path(directory) / f"{name}.txt"
        if path.is_file():
            return path
    return PROMPTS_DIR / f"{name}.txt"


def load_prompt(name: str) -> str:
    """A template's text; read from disk only when the file changed since it was last read."""
    path = template_path(name)
    stamp = path.stat().st_mtime_ns
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    text = path.read_text(encoding="utf-8").strip()
    with _lock:
        _cache[path] = (stamp, text)
    return text


def fixed_head(name: str) -> str:
    """The named template's text before its first ``{placeholder}``: the same for every content,
    so a backend can keep its KV cache (``LLMBackend.select_tags``'s ``head``)."""
    text = load_prompt(name)
    match = _PLACEHOLDER.search(text)
    return text if match is None else text[: match.start()]


def fill_template(template: str, **values: str) -> str:
    """Fill a template text's ``{placeholders}``; unknown names are left as written."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def render_prompt(name: str, **values: str) -> str:
    """Fill the named template's ``{placeholders}``."""
    return fill_template(load_prompt(name), **values)
