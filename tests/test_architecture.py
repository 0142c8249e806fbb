"""Imports point one way: pages (dashboard, api, connect_flow) → the domain (integrations) → its
lib, and sandbox → integrations. Read from the source, so a new upward import fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("api", "config", "connect_flow", "dashboard", "integrations", "sandbox")
# Which project packages each may import (besides itself). `config` is the Celery app and settings.
ALLOWED = {
    "integrations": {"config"},
    "connect_flow": {"integrations", "config"},
    "api": {"connect_flow", "integrations", "config"},
    "dashboard": {"connect_flow", "integrations", "config"},
    "sandbox": {"integrations", "config"},
    "config": set(),
}
# Known exceptions still to be moved, each with its reason; the list may only shrink.
KNOWN = {
    ("config/urls.py", "*"),  # the URLconf mounts every app
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_imports_point_one_way():
    wrong = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if "/migrations/" in rel or (rel, "*") in KNOWN:
                continue
            for target in _imports(path) & set(APPS) - {app}:
                if target not in ALLOWED[app] and (rel, target) not in KNOWN:
                    wrong.append(f"{rel} imports {target}")
    assert wrong == []


def test_the_known_exceptions_still_exist():
    """An exception that was fixed is removed from KNOWN, so the list stays true."""
    for rel, target in KNOWN:
        if target != "*":
            assert target in _imports(ROOT / rel), f"{rel} no longer imports {target}: drop it from KNOWN"


# Function-local imports Django needs, or on the list above to be moved.
LOCAL_IMPORTS_ALLOWED = {
    ("integrations/apps.py", "ready"),  # AppConfig.ready: registers the system checks once apps are loaded
}


def test_no_function_local_imports_of_project_modules_in_the_domain():
    """A function-local import hides an import circle; integrations has none left."""
    hidden = []
    for path in (ROOT / "integrations").rglob("*.py"):
        if "/migrations/" in str(path):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if (str(path.relative_to(ROOT)), func.name) in LOCAL_IMPORTS_ALLOWED:
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] in APPS):
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.name}")
    assert hidden == []


def _writers(pattern: str, owner: str) -> list[str]:
    """Project files other than `owner` whose source matches `pattern`."""
    found = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if "/migrations/" not in rel and rel != owner and re.search(pattern, path.read_text()):
                found.append(rel)
    return found


def test_audit_rows_have_one_writer():
    """Every AuditEvent is written by integrations/audit.py: one shape, one actor value."""
    pattern = r"(?<!class )AuditEvent\(|AuditEvent\.objects\.(create|bulk_create|get_or_create)"
    assert _writers(pattern, "integrations/audit.py") == []


def test_request_logs_have_one_writer():
    """Every RequestLog row is written by integrations/requestlogs.py: one redaction, one failure policy."""
    pattern = r"(?<!class )RequestLog\(|RequestLog\.objects\.(create|bulk_create)"
    assert _writers(pattern, "integrations/requestlogs.py") == []


def test_the_domain_reverses_no_page_urls():
    """A URL name is an import in disguise: integrations links to operator pages through
    integrations.pages, which the dashboard fills in at start-up."""
    reversing = [
        f"{path.relative_to(ROOT)} reverses {name}"
        for path in (ROOT / "integrations").rglob("*.py")
        for name in re.findall(r"reverse\(\s*[\"']([\w:]+)", path.read_text())
    ]
    assert reversing == []
