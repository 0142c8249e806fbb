"""Test settings: the real settings with test secrets and fast password hashing.

DATABASE_URL and REDIS_URL are honoured, so CI runs the suite on PostgreSQL and Redis.
"""

import os

os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")  # receivers on 127.0.0.1
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault(
    "FERNET_KEYS", "dGVzdC1mZXJuZXQta2V5LTAwMDAwMDAwMDAwMDAwMDA=,b2xkLXRlc3QtZmVybmV0LWtleS0wMDAwMDAwMDAwMDA="
)

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
