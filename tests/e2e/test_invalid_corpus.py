"""The invalid-Pod corpus (tests/corpus/invalid-pods/*.yaml): every manifest is refused
with a 422 `Status` whose details.causes name exactly the field its first line expects
(`# expect: <field path>`), and nothing is stored.

Each manifest is sent as kubectl sends it: JSON, with fieldValidation=Strict. A handful
also go through kubectl itself, to see the line users see.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import unique

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "invalid-pods"
FILES = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(r"^#\s*expect:\s*(\S.*?)\s*$")


def expected_field(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# expect: <field path>', got {first!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def corpus_ns(api) -> str:
    name = unique("corpus")
    api.create_namespace(name)
    return name


def test_corpus_size():
    assert len(FILES) >= 50, f"the corpus needs at least 50 manifests, has {len(FILES)}"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_invalid_pod_rejected(api, corpus_ns, path):
    want = expected_field(path)
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and doc.get("kind") == "Pod", f"{path.name} is not a Pod manifest"
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace") or corpus_ns

    r = api.post(f"/api/v1/namespaces/{ns}/pods?fieldValidation=Strict", json.dumps(doc).encode())
    assert r.status == 422, f"{path.name}: expected 422 for {want}, got {r!r}"
    st = r.json()
    assert st["kind"] == "Status" and st["reason"] == "Invalid" and st["code"] == 422, st
    assert st["details"]["kind"] == "Pod", st
    fields = [c.get("field") for c in st["details"].get("causes", [])]
    assert want in fields, f"{path.name}: expected a cause for {want!r}, got {fields} ({st['message']})"

    # Nothing stored: the namespace stays empty (also catches generateName manifests).
    lst = api.get(f"/api/v1/namespaces/{ns}/pods").json()
    assert lst["items"] == [], f"{path.name}: stored {[p['metadata']['name'] for p in lst['items']]}"
    if meta.get("name"):
        assert api.get(f"/api/v1/namespaces/{ns}/pods/{meta['name']}").status == 404


@pytest.mark.parametrize("path", FILES[:: max(1, len(FILES) // 5)][:5], ids=lambda p: p.stem)
def test_invalid_pod_through_kubectl(kubectl, corpus_ns, path):
    """kubectl's own line names the expected field: `The Pod "x" is invalid: <field>: ...`."""
    want = expected_field(path)
    doc = yaml.safe_load(path.read_text())
    if (doc.get("metadata") or {}).get("namespace"):
        pytest.skip("manifest pins its namespace")
    p = kubectl.fails("create", "-f", str(path), "-n", corpus_ns)
    assert "is invalid:" in p.stderr, p.stderr
    assert want in p.stderr, f"{want} not in kubectl's message: {p.stderr}"
