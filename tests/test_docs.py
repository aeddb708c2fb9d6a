"""The documentation stays true to the tree: API reference, links, examples."""

import importlib.util
import os
import re
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

import cymongoose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
README = os.path.join(ROOT, "README.md")

# [text](target) outside code; the target ends at whitespace or ")".
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _markdown_files() -> List[str]:
    names = sorted(n for n in os.listdir(DOCS) if n.endswith(".md"))
    return [README] + [os.path.join(DOCS, n) for n in names]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where links are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str) -> Set[str]:
    text = _FENCE.sub("", _read(path))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def _relative_links(path: str) -> Iterator[Tuple[str, str]]:
    """(target file, anchor) of every relative link in the markdown file ``path``."""
    for target in _LINK.findall(_prose(_read(path))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        yield resolved, anchor


def _load_gen_api() -> Any:
    spec = importlib.util.spec_from_file_location("gen_api", os.path.join(DOCS, "gen_api.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api_md() -> str:
    return _read(os.path.join(DOCS, "api.md"))


def test_api_reference_is_current(api_md: str) -> None:
    """docs/api.md is what ``python docs/gen_api.py`` writes for the package under test."""
    gen_api = _load_gen_api()
    rendered = gen_api.render()
    for modname in gen_api.MODULES:  # gen_api skips modules it cannot import: none may be
        assert "## `%s`" % modname in rendered, modname
    assert api_md == rendered, "docs/api.md is stale: run `python docs/gen_api.py`"


def test_every_public_name_is_in_the_api_reference(api_md: str) -> None:
    documented = set(re.findall(r"`(\w+)", api_md))
    missing = [name for name in cymongoose.__all__ if name not in documented]
    assert not missing, missing
    assert len(cymongoose.__all__) >= 80


def test_relative_links_point_at_existing_files_and_headings() -> None:
    checked: Dict[str, int] = {}
    broken = []
    for path in _markdown_files():
        for target, anchor in _relative_links(path):
            checked[path] = checked.get(path, 0) + 1
            if not os.path.exists(target):
                broken.append("%s -> %s" % (os.path.relpath(path, ROOT), os.path.relpath(target, ROOT)))
            elif anchor and target.endswith(".md") and anchor not in _anchors(target):
                broken.append("%s -> %s#%s" % (os.path.relpath(path, ROOT),
                                               os.path.relpath(target, ROOT), anchor))
    assert not broken, broken
    # The README and the guides link to each other: the check did look at links.
    assert checked.get(README, 0) >= 20
    assert checked.get(os.path.join(DOCS, "differences.md"), 0) >= 5


def test_examples_named_in_the_readme_exist() -> None:
    named = set(re.findall(r"examples/([\w.-]+\.py)", _read(README)))
    assert len(named) >= 15
    missing = sorted(n for n in named if not os.path.isfile(os.path.join(ROOT, "examples", n)))
    assert not missing, missing


def test_slug_matches_github_rules() -> None:
    assert _slug("The broker: `MqttBroker`") == "the-broker-mqttbroker"
    assert _slug("Threads, timers, shutdown") == "threads-timers-shutdown"
