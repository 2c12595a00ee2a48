"""Narrative XHTML (``text.div``): only FHIR's safe subset, so whoever renders a stored narrative runs no script.

R4's invariants txt-1 (only the basic formatting elements and attributes of HTML 4.0 chapters 7-11 and 15, ``<a>``
with name or href, images, inline style) and txt-2 (some non-whitespace content); the element and attribute lists
are the FHIR validator's. The div must be well-formed XML (FHIR's xhtml type): expat reads it in linear time (the
standard library's HTML tokenizer is quadratic on some inputs), and a DOCTYPE stops it before any entity is declared.
HTML entities such as ``&nbsp;`` are not XML and are refused, as FHIR says (send the character, or ``&#160;``).
Character references are decoded before the checks, so ``java&#115;cript:`` is seen as what a browser would see.
"""

from __future__ import annotations

import re
from typing import Final
from xml.parsers import expat

from service.platform.errors import Issue

__all__ = ["narrative_issues"]

XHTML_NAMESPACE: Final = "http://www.w3.org/1999/xhtml"

_ELEMENTS: Final = frozenset(
    {
        "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong", "small", "big",
        "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address", "bdo", "kbd", "sub", "sup",
        "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption", "colgroup", "col", "thead", "tr", "tfoot",
        "tbody", "th", "td", "code", "samp", "img", "map", "area",
    }
)  # fmt: skip
_ANY_ELEMENT_ATTRIBUTES: Final = frozenset(
    {
        "title", "style", "class", "id", "lang", "xml:lang", "dir", "accesskey", "tabindex",
        "span", "width", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan", "colspan",
    }
)  # fmt: skip
_ELEMENT_ATTRIBUTES: Final = frozenset(
    {
        "a.href", "a.name", "a.charset", "a.type", "a.hreflang", "a.rel", "a.rev", "a.shape", "a.coords",
        "img.src", "img.border", "img.alt", "img.longdesc", "img.height", "img.width", "img.usemap", "img.ismap",
        "div.xmlns", "blockquote.cite", "q.cite", "map.name", "area.shape", "area.coords", "area.href",
        "area.nohref", "area.alt", "table.summary", "table.width", "table.border", "table.frame", "table.rules",
        "table.cellspacing", "table.cellpadding", "pre.space", "td.nowrap",
    }
)  # fmt: skip
_URL_ATTRIBUTES: Final = frozenset({"href", "src", "cite", "longdesc", "usemap"})
_SAFE_SCHEMES: Final = frozenset({"http", "https", "mailto", "tel", "urn"})
# Inline images only in raster formats: an SVG image can carry script.
_SAFE_DATA_IMAGE: Final = re.compile(r"data:image/(?:png|gif|jpeg|jpg|bmp|webp)[;,]")
_SCHEME: Final = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# Browsers drop these anywhere in a URL, so "java\tscript:" is javascript:.
_URL_NOISE: Final = re.compile(r"[\x00-\x20\x7f]+")
# CSS that loads, runs or rebinds something; backslash escapes would hide any of these words.
_UNSAFE_STYLE: Final = re.compile(r"url\(|expression|javascript:|@import|behavior|binding|\\", re.IGNORECASE)


def narrative_issues(div: str, where: str) -> list[Issue]:
    """Check a Narrative's ``div`` against txt-1 and txt-2.

    Args:
        div: the XHTML text of ``Narrative.div``.
        where: its FHIRPath, e.g. ``Patient.text.div``.

    Returns:
        One issue per distinct problem found, or none.
    """
    try:
        xml = div.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: no character, so no XML either
        return [Issue("invariant", "txt-1: the narrative holds a lone surrogate, which is not a character", where)]
    checker = _Checker()
    parser = expat.ParserCreate("UTF-8")
    parser.StartElementHandler = checker.start
    parser.CharacterDataHandler = checker.data
    parser.StartDoctypeDeclHandler = _no_doctype
    parser.EntityDeclHandler = _no_doctype
    parser.ProcessingInstructionHandler = checker.processing_instruction
    # XML and HTML parsers end a CDATA section at different places: what one reads as text the other may run.
    parser.StartCdataSectionHandler = checker.cdata
    try:
        parser.Parse(xml, True)
    except _Doctype:
        checker.problems.append("txt-1: a DOCTYPE is not allowed in a narrative")
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code) if exc.code is not None else "not XML"
        checker.problems.append(f"txt-1: the narrative is not well-formed XHTML ({reason}, column {exc.offset + 1})")
    problems = checker.problems
    if not problems and not checker.has_content:
        problems = ["txt-2: the narrative must have some non-whitespace content"]
    return [Issue("invariant", text, where) for text in dict.fromkeys(problems)]


class _Doctype(Exception):
    """Raised from expat's DOCTYPE handler: stops the parse before any entity can be declared or expanded."""


def _no_doctype(*_: object) -> None:
    raise _Doctype


class _Checker:
    """Collects what the narrative must not hold, element by element."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.has_content = False
        self._root_seen = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if not self._root_seen:
            self._root_seen = True
            if tag != "div":
                self.problems.append(f"txt-1: the narrative must be a <div> element, not <{tag}>")
        if tag not in _ELEMENTS:
            self.problems.append(f"txt-1: <{tag}> is not allowed in a narrative (only basic XHTML formatting)")
            return
        if tag == "img":
            self.has_content = True
        for name, value in attrs.items():
            self._check_attribute(tag, name, value)

    def data(self, text: str) -> None:
        if not self.has_content and text.strip():
            self.has_content = True

    def processing_instruction(self, *_: object) -> None:
        self.problems.append("txt-1: processing instructions (<?…?>) are not allowed in a narrative")

    def cdata(self) -> None:
        self.problems.append("txt-1: CDATA sections are not allowed in a narrative")

    def _check_attribute(self, tag: str, name: str, value: str) -> None:
        if name.lower().startswith("on"):
            self.problems.append(f"txt-1: event handler attributes ({name}=) are not allowed in a narrative")
        elif name not in _ANY_ELEMENT_ATTRIBUTES and f"{tag}.{name}" not in _ELEMENT_ATTRIBUTES:
            self.problems.append(f"txt-1: the attribute {name} is not allowed on <{tag}> in a narrative")
        elif name == "xmlns" and value != XHTML_NAMESPACE:
            self.problems.append(f"txt-1: the narrative's namespace must be {XHTML_NAMESPACE}")
        elif name in _URL_ATTRIBUTES and not _safe_url(value, inline_image=(tag, name) == ("img", "src")):
            self.problems.append(f"txt-1: <{tag} {name}=…> must be an http(s), mailto, tel or relative URL")
        elif name == "style" and _UNSAFE_STYLE.search(value):
            self.problems.append("txt-1: style may only format (no url(), expression, @import, bindings or escapes)")


def _safe_url(value: str, inline_image: bool) -> bool:
    url = _URL_NOISE.sub("", value).lower()
    match = _SCHEME.match(url)
    if match is None:
        return True  # relative, or a fragment within the narrative
    if inline_image and _SAFE_DATA_IMAGE.match(url):
        return True
    return match.group(1) in _SAFE_SCHEMES
