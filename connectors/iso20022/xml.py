"""The hardened XML parser and the compiled ISO 20022 schemas, loaded once per process.

Parsing rules (XML bombs and external references cannot get in):
- no DTD at all: a body with a DOCTYPE is refused before parsing, so no entity can be
  declared (entity expansion, "billion laughs") or point outside (XXE); an undeclared
  entity reference is a syntax error;
- no network, no XInclude, no huge-tree mode (libxml2 then refuses more than 256 levels of
  nesting and text nodes over 10 MB), comments and processing instructions dropped;
- the body's size is bounded by the transport before it gets here.

Schemas: one `lxml.etree.XMLSchema` per message definition in `xsd/` (vendored from the ISO
20022 catalogue and FedNow, Apache 2.0), compiled at first use and kept. `validate`
checks one element (an AppHdr or a Document) against its definition in place: the
body is parsed once and never re-serialised to be checked.

This module must never load anything from the network or the file system other than
the schemas beside it.
"""

from __future__ import annotations

import os
import threading

from lxml import etree

XSD_DIR = os.path.join(os.path.dirname(__file__), "xsd")
NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
HEAD = "head.001.001.02"

# Every message definition the connector reads or writes; the namespace says which.
DEFINITIONS = (
    HEAD, "admi.002.001.01", "pacs.002.001.10", "pacs.004.001.10", "pacs.008.001.08",
    "pacs.028.001.03", "camt.029.001.09", "camt.052.001.08", "camt.054.001.08",
    "camt.056.001.08", "pain.013.001.07", "pain.014.001.07",
)
DEFINITION_BY_NAMESPACE = {NS_PREFIX + name: name for name in DEFINITIONS}

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True, collect_ids=False,
    strip_cdata=True)
_schemas: dict[str, etree.XMLSchema] = {}
_lock = threading.Lock()


class XmlRefused(Exception):
    """The body is not acceptable XML (syntax, a DTD, too deep); `str()` says why."""


def parse(body: bytes) -> etree._Element:
    """The root element of `body`, parsed with the hardened parser; XmlRefused otherwise."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlRefused("DTDs and entity declarations are not accepted")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise XmlRefused(f"malformed XML: {error.msg}") from None
    except ValueError as error:  # e.g. a str with an encoding declaration
        raise XmlRefused(f"malformed XML: {error}") from None
    if root.getroottree().docinfo.doctype:  # belt and braces: the scan above misses none
        raise XmlRefused("DTDs are not accepted")
    return root


def schema(definition: str) -> etree.XMLSchema:
    """The compiled schema of one message definition (e.g. "pacs.008.001.08")."""
    found = _schemas.get(definition)
    if found is None:
        with _lock:
            found = _schemas.get(definition)
            if found is None:
                path = os.path.join(XSD_DIR, definition + ".xsd")
                found = etree.XMLSchema(etree.parse(path, _PARSER))
                _schemas[definition] = found
    return found


def load_all() -> None:
    """Compile every schema now (the connector calls it at start, not on a first message)."""
    for definition in DEFINITIONS:
        schema(definition)


def validate(definition: str, element: etree._Element) -> str | None:
    """None when `element` is valid against `definition`, else the first error's text."""
    checker = schema(definition)
    if checker.validate(element):
        return None
    error = checker.error_log.last_error
    return _describe(error)


def _describe(error) -> str:
    if error is None:
        return "schema validation failed"
    # lxml's message names the element in Clark notation; the namespace adds nothing.
    message = error.message
    if "}" in message:
        parts = message.split("'")
        message = "'".join(part.rsplit("}", 1)[-1] if part.startswith("{") else part
                           for part in parts)
    return f"line {error.line}: {message}"[:500]
