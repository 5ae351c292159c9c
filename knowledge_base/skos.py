"""SKOS vocabularies in and out: the format libraries and archives keep their tag repositories in.

``read_vocabulary(path)`` reads a tag repository of any format (what ``kb load-vocab`` and the page
call); ``read_skos(path)`` reads a SKOS file — Turtle (``.ttl``), RDF/XML (``.rdf``, ``.xml``, ``.owl``),
JSON-LD (``.jsonld``) or N-Triples (``.nt``) — with rdflib into the same ``Tag`` records as a
TSV: each ``skos:Concept`` (or anything with a ``skos:prefLabel``) becomes a tag named by its
``prefLabel`` in the language asked for (else the label without a language, else the first in
alphabetical order of language); ``altLabel`` and ``hiddenLabel`` (in that language or none)
become its synonyms, which recall matches on; ``definition`` (else ``scopeNote``) its
description; its ``broader`` concept (or a concept that lists it as ``narrower``) its parent; its
``prefLabel`` in every language its ``labels``, which a result returns on request (``label_language``).
The checks of ``loaders.read_tags`` hold: two concepts with the same label, a broader concept
that exists nowhere, a cycle. A concept marked ``owl:deprecated true`` or with
``dct:isReplacedBy`` is not loaded as a tag but as a change (``Parsed.changes``): a tag of that
name already in the repository is merged into the replacement or retired when the file loads.

``write_skos(tags, path)`` writes tags as a SKOS concept scheme (the format from the suffix), so a
flat or two-level repository such as debtags' can be exchanged with SKOS tools and read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from .errors import LoadError
from .loaders import OnError, Parsed, Problem, Tag, _check_hierarchy, _finish, clean_text, read_tags, valid_unicode

FORMATS = {".ttl": "turtle", ".rdf": "xml", ".xml": "xml", ".owl": "xml", ".jsonld": "json-ld", ".nt": "nt"}
DEFAULT_NAMESPACE = "urn:llm4tag:tag:"


def is_skos(path: str | Path) -> bool:
    """Whether a vocabulary file is read as SKOS (by its suffix)."""
    return Path(path).suffix.lower() in FORMATS


def read_vocabulary(path: str | Path, on_error: OnError = "stop", known: Iterable[str] = (), language: str | None = "en") -> Parsed:
    """A tag repository in any format llm4tag reads: SKOS by its suffix (``read_skos``, labels in
    ``language``), else a flat file (``loaders.read_tags``)."""
    if is_skos(path):
        return read_skos(path, on_error, known, language)
    return read_tags(path, on_error, known)


def _label(values, language: str | None) -> str | None:
    """The label in ``language``, else one without a language, else the first by language tag."""
    values = [v for v in values if str(v).strip()]
    for wanted in ([language] if language else []) + [None]:
        for v in sorted(values, key=str):
            if getattr(v, "language", None) == wanted:
                return str(v)
    if not values:
        return None
    return str(sorted(values, key=lambda v: (getattr(v, "language", "") or "", str(v)))[0])


def read_skos(path: str | Path, on_error: OnError = "stop", known: Iterable[str] = (), language: str | None = "en") -> Parsed:
    """Read a SKOS vocabulary into tags (see the module's docstring)."""
    import rdflib
    from rdflib.namespace import DCTERMS, OWL, RDF, SKOS

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LoadError(f"unsupported SKOS format {suffix!r}; use .ttl, .rdf, .xml, .owl, .jsonld or .nt", str(path))
    if not path.is_file():
        raise LoadError("file not found", str(path))
    graph = rdflib.Graph()
    try:
        graph.parse(path, format=FORMATS[suffix])
    except Exception as exc:  # rdflib raises many kinds (syntax errors, XML, JSON); each means the same to a user
        raise LoadError(
            f"not a readable {FORMATS[suffix]} file ({type(exc).__name__}: {str(exc)[:300]}); nothing was loaded", str(path)
        ) from exc
    concepts = sorted(set(graph.subjects(RDF.type, SKOS.Concept)) | set(graph.subjects(SKOS.prefLabel, None)), key=str)
    parsed = Parsed()
    if not concepts:
        raise LoadError("no SKOS concept found (nothing typed skos:Concept or carrying a skos:prefLabel); nothing was loaded", str(path))
    retired, replacements = [], []
    names: dict = {}  # concept → tag name
    for concept in concepts:
        name = _label(list(graph.objects(concept, SKOS.prefLabel)), language)
        if name is None:
            parsed.problems.append(Problem(str(path), None, f"concept <{concept}> has no skos:prefLabel; give it one"))
            continue
        try:
            name = clean_text(valid_unicode(name, "a prefLabel"))
        except ValueError as exc:
            parsed.problems.append(Problem(str(path), None, f"concept <{concept}>: {exc}"))
            continue
        deprecated = any(str(v).lower() == "true" for v in graph.objects(concept, OWL.deprecated))
        replaced = list(graph.objects(concept, DCTERMS.isReplacedBy))
        if deprecated or replaced:
            retired.append(name)
            into = _label(list(graph.objects(sorted(replaced, key=str)[0], SKOS.prefLabel)), language) if replaced else None
            replacements += [f"{name} → {into}"] if into else []
            parsed.changes.append((name, into))
            continue
        names[concept] = name
    parent_of: dict = {}
    for concept in names:
        broader = sorted(set(graph.objects(concept, SKOS.broader)) | set(graph.subjects(SKOS.narrower, concept)), key=str)
        if broader:
            parent_of[concept] = broader
    seen: dict[str, str] = {}
    several = 0
    lines: dict[str, int | None] = {}
    for concept, name in names.items():
        if name in seen:
            parsed.problems.append(
                Problem(
                    str(path),
                    None,
                    f"concepts <{seen[name]}> and <{concept}> share the label {name!r}; "
                    "a tag name must be unique (give one another prefLabel)",
                )
            )
            continue
        seen[name] = str(concept)
        lines[name] = None
        description = (
            _label(list(graph.objects(concept, SKOS.definition)), language)
            or _label(list(graph.objects(concept, SKOS.scopeNote)), language)
            or ""
        )
        synonyms = []
        for predicate in (SKOS.altLabel, SKOS.hiddenLabel):
            for value in sorted(graph.objects(concept, predicate), key=str):
                if getattr(value, "language", None) in (language, None) and clean_text(str(value)) not in synonyms + [name]:
                    synonyms.append(clean_text(str(value)))
        parent = None
        if concept in parent_of:
            first = parent_of[concept][0]
            several += len(parent_of[concept]) > 1
            parent = names.get(first) or _label(list(graph.objects(first, SKOS.prefLabel)), language) or str(first)
        labels = {}
        for value in sorted(graph.objects(concept, SKOS.prefLabel), key=str):
            spoken = getattr(value, "language", None)
            if spoken and spoken.lower() != language.lower() and spoken.lower() not in labels and clean_text(str(value)):
                labels[spoken.lower()] = clean_text(str(value))  # the name is the label in ``language``
        parsed.records.append(Tag(name, clean_text(description), tuple(s for s in synonyms if s), parent, tuple(sorted(labels.items()))))
    if retired:
        parsed.warnings.append(
            f"{path}: {len(retired)} deprecated concepts not loaded as tags ({', '.join(retired[:10])}"
            f"{' …' if len(retired) > 10 else ''})" + (f"; replacements: {', '.join(replacements[:10])}" if replacements else "")
        )
    if several:
        parsed.warnings.append(
            f"{path}: {several} concepts have several broader concepts; the first (by URI) is kept as the "
            "parent, since llm4tag keeps the hierarchy as a tree"
        )
    _check_hierarchy(parsed, path, set(known), lines)
    return _finish(parsed, on_error, path, "tags")


def write_skos(tags: Iterable[Tag], path: str | Path, namespace: str = DEFAULT_NAMESPACE, language: str = "en") -> int:
    """Write ``tags`` as one SKOS concept scheme (format from the suffix); returns how many concepts.
    Each tag is a concept ``namespace + name`` with its name as ``prefLabel``, description as
    ``definition``, synonyms as ``altLabel`` and parent as ``broader`` (with ``narrower`` back);
    a parent that is not itself among the tags becomes a concept of its own."""
    import rdflib
    from rdflib.namespace import RDF, SKOS

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise LoadError(f"unsupported SKOS format {path.suffix!r}; use .ttl, .rdf, .xml, .owl, .jsonld or .nt", str(path))
    tags = list(tags)
    graph = rdflib.Graph()
    graph.bind("skos", SKOS)
    scheme = rdflib.URIRef(namespace.rstrip(":/#") or namespace)
    graph.add((scheme, RDF.type, SKOS.ConceptScheme))

    def node(name: str) -> rdflib.URIRef:
        return rdflib.URIRef(namespace + quote(name, safe=":-_.~"))

    names = {t.name for t in tags}
    extra = sorted({t.parent for t in tags if t.parent and t.parent not in names})
    for tag in [*tags, *(Tag(n) for n in extra)]:
        concept = node(tag.name)
        graph.add((concept, RDF.type, SKOS.Concept))
        graph.add((concept, SKOS.inScheme, scheme))
        graph.add((concept, SKOS.prefLabel, rdflib.Literal(tag.name, lang=language)))
        for spoken, label in tag.labels:
            if spoken != language:
                graph.add((concept, SKOS.prefLabel, rdflib.Literal(label, lang=spoken)))
        if tag.description:
            graph.add((concept, SKOS.definition, rdflib.Literal(tag.description, lang=language)))
        for synonym in tag.synonyms:
            graph.add((concept, SKOS.altLabel, rdflib.Literal(synonym, lang=language)))
        if tag.parent:
            graph.add((concept, SKOS.broader, node(tag.parent)))
            graph.add((node(tag.parent), SKOS.narrower, concept))
        else:
            graph.add((concept, SKOS.topConceptOf, scheme))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    graph.serialize(destination=tmp, format=FORMATS[path.suffix.lower()])
    tmp.replace(path)
    return len(tags) + len(extra)
