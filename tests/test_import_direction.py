"""The house's arrows (docs/architecture.md): which package may import which.

attribution (the CLI) → orchestration → ingestion, commissions → platform_core;
commissions reads the spreadsheet rule of the input contract; synthetic_crm reads
the input contract (ingestion.contracts); benchmarks/ and tests/ are dev-only trees
that nothing in the product imports, and that the wheel does not ship. Read from the
source with `ast`, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from platform_core.settings import project_root

ROOT = project_root()
PRODUCT = (
    "platform_core",
    "ingestion",
    "commissions",
    "orchestration",
    "attribution",
    "synthetic_crm",
)
DEV_ONLY = ("benchmarks", "tests")
# What each product package may import of ours (itself always allowed).
ALLOWED = {
    "platform_core": set(),
    "ingestion": {"platform_core"},
    "commissions": {"platform_core", "ingestion.contracts"},
    "orchestration": {"platform_core", "ingestion", "commissions"},
    "synthetic_crm": {"ingestion.contracts"},
    "attribution": {"platform_core", "ingestion", "commissions", "orchestration", "synthetic_crm"},
}
OURS = set(PRODUCT) | set(DEV_ONLY)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import statement in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from ingestion import contracts` imports ingestion.contracts
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def permitted(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and not permitted(module, allowed):
                # `from ingestion import contracts` also yields the bare `ingestion`
                if any(permitted(m, allowed) for ln, m in imports_of(path) if ln == line):
                    continue
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", PRODUCT)
def test_package_imports_only_below_it(package: str) -> None:
    assert violations(package) == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The test above can fail: an upward import in a file is reported with its line."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from orchestration.run import x\n")
    assert (4, "orchestration.run") in imports_of(sample)
    assert not permitted("orchestration.run", ALLOWED["ingestion"])
    assert permitted("ingestion.contracts", ALLOWED["synthetic_crm"])
    assert not permitted("ingestion.loader", ALLOWED["synthetic_crm"])


def test_ingestion_knows_nothing_of_dagster() -> None:
    used = {
        module.split(".")[0]
        for path in (ROOT / "ingestion").rglob("*.py")
        for _, module in imports_of(path)
    }
    assert not used & {"dagster", "dagster_dbt", "dbt"}


def test_dev_only_trees_are_not_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(where=str(ROOT), include=include))
    assert {p.split(".")[0] for p in shipped} == set(PRODUCT), shipped


def test_product_needs_no_dev_dependency() -> None:
    """pandas and SQLAlchemy serve the benchmark's peers only: the product does not
    import them (they stay installed in production only as others' dependencies)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = " ".join(config["project"]["dependencies"]).lower()
    dev_only = {"pandas", "sqlalchemy", "pytest", "hypothesis"}
    assert not {name for name in dev_only if f"{name}==" in declared}
    used = {
        module.split(".")[0].lower()
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        for _, module in imports_of(path)
    }
    assert not used & dev_only
