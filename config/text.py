"""Characters no text of Relink's may hold: NUL (U+0000), which PostgreSQL can neither store nor
compare, and unpaired surrogates (U+D800 to U+DFFF), which no UTF-8 encoder accepts.

One definition for the three places that meet them: the input guard refuses them in URLs and
forms (config.middleware), the API refuses them in JSON bodies (api.framework), and what is
stored anyway, a request log, has them replaced (integrations.lib.redaction.clean).
"""

from __future__ import annotations

import re

UNUSABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def has_unusable(text: str) -> bool:
    return UNUSABLE.search(text) is not None


def replace_unusable(text: str) -> str:
    """`text` with each NUL and unpaired surrogate replaced by U+FFFD."""
    return UNUSABLE.sub(REPLACEMENT, text)
