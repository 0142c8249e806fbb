"""Rules about text that every layer applies, defined once (config is imported by every app).

Characters no text of Relink's may hold: NUL (U+0000), which PostgreSQL can neither store nor
compare, and unpaired surrogates (U+D800 to U+DFFF), which no UTF-8 encoder accepts. The input
guard refuses them in URLs and forms (config.middleware), the API in JSON bodies (api.framework),
and what is stored anyway, a request log, has them replaced (integrations.lib.redaction.clean).

Names of secret values, and the marker that replaces them: request-log bodies
(integrations.lib.redaction) and error reports (config.logsafe) hide the same names.
"""

from __future__ import annotations

import re

UNUSABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
REDACTED = "[REDACTED]"

# A name is secret when it contains one of these words (api_key, client_secret, refresh_token,
# access_token, activation_token, password, authorization, …) …
_SECRET_WORDS = re.compile(
    r"api_?key|secret|token|passw(or)?d|pwd|authori[sz]ation|credential|private_?key", re.IGNORECASE
)
# … or is/ends with "link": a connection link carries its token (`link`, `magic_link`; not `link_type`).
_LINK_NAME = re.compile(r"(^|[_\-])link$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name) or _LINK_NAME.search(name))


def has_unusable(text: str) -> bool:
    return UNUSABLE.search(text) is not None


def replace_unusable(text: str) -> str:
    """`text` with each NUL and unpaired surrogate replaced by U+FFFD."""
    return UNUSABLE.sub(REPLACEMENT, text)
