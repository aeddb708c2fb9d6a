"""The documentation stays true to the tree: API reference, links, examples."""

import importlib.util
import os
import re
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

import cymongoose
from support.paths import ROOT

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


# -- the guides' code -----------------------------------------------------------

_RUNNABLE_GUIDES = ["mqtt.md", "wsgi-asgi.md"]


def _runnable_blocks() -> List[Tuple[str, str]]:
    """(id, code) of each self-contained Python block of the guides above.

    Self-contained: it starts with an import and ends by itself (blocks that
    call ``mgr.run()`` or ``serve(...)`` serve until Ctrl-C and are left out).
    """
    out = []
    for name in _RUNNABLE_GUIDES:
        blocks = re.findall(r"^```python\n(.*?)^```", _read(os.path.join(DOCS, name)), re.S | re.M)
        for i, code in enumerate(blocks):
            if re.match(r"(import|from) ", code) and not re.search(r"\.run\(\)|\bserve\(", code):
                out.append(("%s-%d" % (name, i), code))
    return out


def _expected_output(code: str) -> List[str]:
    """What the block's comments say it prints: ``print(x)  # out`` and the
    comment lines right after a ``print`` line."""
    expected = []
    after_print = False
    for line in code.splitlines():
        stripped = line.strip()
        if "print(" in line and "#" in line:
            expected.append(line.split("#", 1)[1].strip())
        elif after_print and stripped.startswith("# "):
            expected.append(stripped[2:])
            continue
        after_print = "print(" in line
    return expected


_BLOCKS = _runnable_blocks()


@pytest.fixture(scope="module")
def mosquitto_url(tmp_path_factory: Any) -> Iterator[str]:
    from support.mqtt import Mosquitto

    mosq = Mosquitto(str(tmp_path_factory.mktemp("mosquitto"))).start()
    try:
        yield "mqtt://127.0.0.1:%d" % mosq.port
    finally:
        mosq.stop()


def test_guides_have_runnable_blocks() -> None:
    assert len(_BLOCKS) >= 5, [name for name, _ in _BLOCKS]


@pytest.mark.parametrize("name,code", _BLOCKS, ids=[name for name, _ in _BLOCKS])
def test_guide_block_runs_and_prints_what_it_says(name: str, code: str, tmp_path: Any,
                                                 mosquitto_url: str) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(cymongoose.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    # A block reading sys.argv[1] takes the broker URL (the MQTT 5 one needs mosquitto).
    proc = subprocess.run([sys.executable, str(script), mosquitto_url], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = _expected_output(code)
    assert expected, "the block documents no output"
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout)
