"""Compile every locale/*/LC_MESSAGES/*.po to .mo in pure Python (polib), no GNU gettext needed.

`manage.py compilemessages` needs GNU gettext's msgfmt, which many machines lack; the .mo files
are build output (git-ignored), so `make demo` and `make test` run this first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def catalog_paths() -> list[Path]:
    return sorted(path for root in settings.LOCALE_PATHS for path in Path(root).glob("*/LC_MESSAGES/*.po"))


def compile_catalog(po_path: Path) -> Path:
    """Write `<name>.mo` next to `po_path` (fuzzy and untranslated entries left out, like msgfmt).

    Written to a temporary file and renamed, so a running server never reads half a catalog.
    """
    try:
        catalog = polib.pofile(str(po_path), check_for_duplicates=True)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{po_path}: {exc}") from exc
    mo_path = po_path.with_suffix(".mo")
    fd, tmp = tempfile.mkstemp(dir=po_path.parent, prefix=".", suffix=".mo")
    os.close(fd)
    try:
        catalog.save_as_mofile(tmp)
        os.replace(tmp, mo_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return mo_path


class Command(BaseCommand):
    help = "Compile every locale/*/LC_MESSAGES/*.po to .mo with polib (no GNU gettext needed)."
    # Needs no database and no checks: it runs before migrate in `make demo`.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def handle(self, *args, **options) -> None:
        paths = catalog_paths()
        if not paths:
            raise CommandError(f"No .po files under {', '.join(str(p) for p in settings.LOCALE_PATHS)}")
        for po_path in paths:
            mo_path = compile_catalog(po_path)
            if options["verbosity"] >= 2:
                self.stdout.write(f"compiled {mo_path}")
        self.stdout.write(f"Compiled {len(paths)} catalog(s).")
