"""Relink settings. Every deployment-specific value comes from the environment (django-environ).

With nothing set, Relink runs for local development on SQLite and an embedded Celery broker.
With DEBUG off, SECRET_KEY and FERNET_KEYS are required: startup stops with a clear message.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
# A local `.env` file (git-ignored) may hold settings for manage.py in a development checkout,
# e.g. `DEBUG=true`. Real environment variables take precedence over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# Insecure values used only when DEBUG is on, so `manage.py runserver` works out of the box.
# `make demo` does not use them: it generates its own secrets into var/demo.env.
_DEV_SECRET_KEY = "insecure-dev-only-secret-key-do-not-use-in-production"
_DEV_FERNET_KEY = "ZGV2LW9ubHktZmVybmV0LWtleS1ub3Qtc2VjcmV0ISE="


def _required(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Relink refuses to start without it when DEBUG is off. "
        f"Set {name} in the environment (see README, 'Configuration')."
    )


SECRET_KEY = _required("SECRET_KEY", _DEV_SECRET_KEY)

# Comma-separated Fernet keys: the first encrypts, all decrypt (see `rotate_fernet_keys`).
FERNET_KEYS = [k.strip() for k in _required("FERNET_KEYS", _DEV_FERNET_KEY).split(",") if k.strip()]
for _key in FERNET_KEYS:
    try:
        Fernet(_key)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FERNET_KEYS contains a value that is not a Fernet key (32 url-safe base64-encoded "
            "bytes). Generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc

BASE_URL = env.str("BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[BASE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "axes",
    "csp",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "integrations",
    "connect_flow",
    "dashboard",
    "api",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before the input guard, so the guard's own 400 answers carry the policy too.
    "csp.middleware.CSPMiddleware",
    "config.middleware.InputGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Times in the operator's own zone (their preferences page).
    "dashboard.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a locked-out login (django-axes) into the "too many attempts" page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.environments",
                "dashboard.context_processors.nav_section",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'relink.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the Celery worker read and write the same file at once;
    # IMMEDIATE transactions take the write lock up front instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "integrations.User"

# --- Redis: Celery broker and cache when set; otherwise an embedded broker and a local cache ---
REDIS_URL = env.str("REDIS_URL", default="")
# Short socket timeouts: with Redis unreachable a request falls back quickly (the cache misses,
# the task waits in the outbox) instead of hanging.
REDIS_SOCKET_OPTIONS: dict[str, object] = {"socket_connect_timeout": 2, "socket_timeout": 5}
if REDIS_URL:
    CACHES = {
        "default": {
            # Fail-soft: with Redis down the cache misses and logs a warning (config/cache.py).
            "BACKEND": "config.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": dict(REDIS_SOCKET_OPTIONS),
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(REDIS_SOCKET_OPTIONS)
    CELERY_RESULT_BACKEND = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # kombu's filesystem transport: web, worker and beat exchange messages as files under var/,
    # so the demo needs no broker server and still runs in three separate processes.
    _broker_dir = env.path("CELERY_FILESYSTEM_DIR", default=VAR_DIR / "celery")
    _queue_dir = Path(_broker_dir) / "queue"
    _processed_dir = Path(_broker_dir) / "processed"
    _control_dir = Path(_broker_dir) / "control"
    for _dir in (_queue_dir, _processed_dir, _control_dir):
        _dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = None

# --- Celery -----------------------------------------------------------------------------------
CELERY_TIMEZONE = "UTC"
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, and requeued if its worker dies mid-task; tasks are
# written to be safe to run twice (they take primary keys and re-check state).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
# A message taken by a worker that then vanished (kill -9 of the whole worker, a lost machine)
# goes back to its queue after this long on Redis (kombu's default is an hour). Longer than
# the hard time limit, so a task still running is never handed out twice; a running sync's own
# lease brings it back sooner (SYNC_LEASE_SECONDS below).
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = CELERY_TASK_TIME_LIMIT + 60
    # A worker consuming several queues takes from them in a fixed order (kombu's Redis
    # transport, "priority": one BRPOP over the queues, in the order of CELERY_TASK_QUEUES
    # below), so work a person is waiting for goes before the periodic jobs and those before the
    # scheduler's sync backlog.
    CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = "priority"
# Queues, so that no kind of work can hold up another: syncs, webhook deliveries (a slow
# receiver waits out its timeout there), interactive work an operator or a customer is waiting
# for (Check now), and the default queue for the short periodic jobs. A worker started without
# -Q consumes them all; production runs one worker for `webhooks` and others for the rest
# (README, "Running in production").
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Each queue has its own routing key: bound alike, a direct exchange would copy every task into all.
# In priority order (see queue_order_strategy above).
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in ("interactive", "celery", "syncs", "webhooks")]
CELERY_TASK_ROUTES = {
    "integrations.syncs.run_sync": {"queue": "syncs"},
    # The same work, queued by a person (a completed link, Force sync): before the scheduler's.
    "integrations.syncs.run_sync_now": {"queue": "interactive"},
    "integrations.webhooks.attempt_delivery": {"queue": "webhooks"},
    "integrations.webhooks.deliver_due_webhooks": {"queue": "webhooks"},
    "integrations.health.check_integration": {"queue": "interactive"},
}
# A running sync renews its lease every SYNC_HEARTBEAT_SECONDS; one not renewed for
# SYNC_LEASE_SECONDS lost its worker and is run again by the reaper, every SYNC_REAP_SECONDS.
SYNC_HEARTBEAT_SECONDS = env.int("SYNC_HEARTBEAT_SECONDS", default=10)
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=40)
SYNC_REAP_SECONDS = env.int("SYNC_REAP_SECONDS", default=15)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers and beat reconnect to a lost broker for as long as it takes (kombu backs off 2 s, 4 s, …
# up to 30 s between tries), instead of exiting after 100 tries (~45 minutes).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A publish gives up after ~1 s (the broker is down): the task stays in the outbox
# (integrations/outbox.py) and beat's flush_outbox sends it once the broker is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}
# Modules other than an app's tasks.py that define tasks: each task lives beside the code it runs.
CELERY_IMPORTS = [
    "integrations.outbox",
    "integrations.syncs",
    "integrations.health",
    "integrations.webhooks",
    "connect_flow.notifications",
    "integrations.digest",
]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Periodic jobs. Each entry expires after its interval so a backlog never runs twice over.
SCHEDULER_TICK_SECONDS = env.int("SCHEDULER_TICK_SECONDS", default=60)
OUTBOX_FLUSH_SECONDS = env.int("OUTBOX_FLUSH_SECONDS", default=10)
WEBHOOK_RETRY_SECONDS = env.int("WEBHOOK_RETRY_SECONDS", default=10)
RECONNECT_REQUEST_MINUTES = env.int("RECONNECT_REQUEST_MINUTES", default=5)
CELERY_BEAT_SCHEDULE = {
    # Publish outbox tasks whose publish after commit failed (broker down), or whose time came
    # (webhook retries): work committed during a broker outage goes out seconds after it is back.
    "flush-outbox": {
        "task": "integrations.outbox.flush_outbox",
        "schedule": timedelta(seconds=OUTBOX_FLUSH_SECONDS),
        "options": {"expires": OUTBOX_FLUSH_SECONDS},
    },
    # Claim integrations whose next_sync_at is due and queue their syncs (integrations/syncs.py).
    "scheduler-tick": {
        "task": "integrations.syncs.tick",
        "schedule": timedelta(seconds=SCHEDULER_TICK_SECONDS),
        "options": {"expires": SCHEDULER_TICK_SECONDS},
    },
    # Run again syncs whose worker died; fail syncs stuck RUNNING; resend QUEUED syncs whose
    # task was lost inside the broker.
    "reap-stuck-syncs": {
        "task": "integrations.syncs.reap_stuck_syncs",
        "schedule": timedelta(seconds=SYNC_REAP_SECONDS),
        "options": {"expires": SYNC_REAP_SECONDS},
    },
    # Re-check INVALID integrations once a day each (the task selects those checked > 23 h ago).
    "recheck-invalid-integrations": {
        "task": "integrations.health.recheck_invalid_integrations",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    # Queue the webhook retries that are due (they wait in their rows, never as delayed broker
    # messages) and deliveries whose task was lost inside the broker (integrations/webhooks.py).
    "retry-due-webhooks": {
        "task": "integrations.webhooks.retry_due_webhooks",
        "schedule": timedelta(seconds=WEBHOOK_RETRY_SECONDS),
        "options": {"expires": WEBHOOK_RETRY_SECONDS},
    },
    # Record an audit event for each link that passed its expiry since the last run.
    "record-expired-links": {
        "task": "connect_flow.tasks.record_expired_links",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # Email end customers whose integration's authentication is failing (connect_flow/notifications.py):
    # each step of the schedule once; failed sends are retried.
    "send-reconnect-requests": {
        "task": "connect_flow.notifications.send_reconnect_requests",
        "schedule": timedelta(minutes=RECONNECT_REQUEST_MINUTES),
        "options": {"expires": RECONNECT_REQUEST_MINUTES * 60},
    },
    # Operators' email digests (integrations/digest.py): immediate ones within this interval.
    "send-digests": {
        "task": "integrations.digest.send_digests",
        "schedule": timedelta(minutes=RECONNECT_REQUEST_MINUTES),
        "options": {"expires": RECONNECT_REQUEST_MINUTES * 60},
    },
    # Delete request logs older than REQUEST_LOG_RETENTION_DAYS, in batches.
    "prune-request-logs": {
        "task": "integrations.tasks.prune_request_logs",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 24 * 3600},
    },
}

# --- Auth, sessions, security -------------------------------------------------------------------
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one account, or
# from one client address, that account or address is refused for LOGIN_LOCKOUT_MINUTES — even
# with the right password. Applies to the dashboard's and the admin's sign-in. Unlock early in
# Django admin (Axes → Access attempts: delete the rows) or `manage.py axes_reset_username <email>`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_USERNAME_CALLABLE = "config.throttle.login_username"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failed attempts are kept; successful sign-ins are not logged
AXES_LOCKOUT_CALLABLE = "config.throttle.locked_out"
AXES_SENSITIVE_PARAMETERS = ["password"]
# Behind N reverse proxies, the client address is the Nth from the right of X-Forwarded-For (the
# nearest proxy is REMOTE_ADDR, so ipware counts the N - 1 others). Login throttling and the API's
# per-address limit both read it through axes.helpers.get_client_ip_address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT - 1
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")

# Content-Security-Policy for the dashboard, admin and API: this origin only, no inline script or
# style (htmx's indicator style is in relink.css; base.html turns off its injected <style>). The
# hosted connect pages send their own, with the environment's allowed frame ancestors
# (connect_flow/headers.py); the middleware leaves a response that already has one alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if BASE_URL.startswith("https://"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Served over https only: plain-http requests are redirected, and browsers told to stay on https.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    # Relink usually runs on one host of a domain it does not own: covering the other subdomains,
    # or asking browsers to preload the domain, is the domain owner's call (check --deploy would
    # warn about both otherwise).
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    ]

# --- Email ------------------------------------------------------------------------------------
# EMAIL_URL picks the backend: smtp://user:password@host:25, smtp+tls://…:587 (STARTTLS),
# smtp+ssl://…:465, filemail:///path/to/dir (one file per message), consolemail:// (stdout).
# Invitations to operators go out this way.
# (An absolute file path takes four slashes after "filemail:", as in the demo.) Unset parts keep
# Django's defaults.
vars().update({k: v for k, v in env.email_url("EMAIL_URL", default="consolemail://").items() if v is not None})
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Relink <relink@localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- I18n and static files -----------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic writes (hashed and precompressed copies, see STORAGES) and whitenoise serves from.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Serve straight from the app and project folders when collectstatic has not run (demo, tests).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
if WHITENOISE_USE_FINDERS:
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"

# Every log record is redacted where it is made (tokens in paths, credentials): config/logsafe.py.
LOGGING_CONFIG = "config.logsafe.configure"
DEFAULT_EXCEPTION_REPORTER = "config.logsafe.SafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.logsafe.SafeReporterFilter"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-axes announces its configuration at every start; lockouts (WARNING) still show.
    "loggers": {"axes.apps": {"level": "WARNING"}},
}

# --- Relink -----------------------------------------------------------------------------------
REQUEST_LOG_RETENTION_DAYS = env.int("REQUEST_LOG_RETENTION_DAYS", default=30)
# The fake HR system under /sandbox/. Turn it off in production if nobody needs it.
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=True)
# Webhook endpoints on loopback, private, link-local or otherwise non-public addresses are refused
# (integrations/lib/targets.py), on save and at delivery. The demo and the tests turn this on to
# deliver to receivers on 127.0.0.1; a deployment whose receivers are internal may too.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
# Webhook delivery: seconds before an attempt gives up (connect, send, each read), and how many due
# deliveries one task claims and sends at once (one thread each, one pooled client per process).
WEBHOOK_HTTP_TIMEOUT = env.float("WEBHOOK_HTTP_TIMEOUT", default=15.0)
WEBHOOK_DELIVERY_BATCH = env.int("WEBHOOK_DELIVERY_BATCH", default=20)
# Timeout for calls to provider APIs, in seconds.
PROVIDER_HTTP_TIMEOUT = env.float("PROVIDER_HTTP_TIMEOUT", default=15.0)
# Provider API base URLs (overridable, e.g. for a regional endpoint or a test double).
PERSONIO_BASE_URL = env.str("PERSONIO_BASE_URL", default="https://api.personio.de/v1")
BAMBOOHR_BASE_URL = env.str("BAMBOOHR_BASE_URL", default="https://api.bamboohr.com/api/gateway.php")
HIBOB_BASE_URL = env.str("HIBOB_BASE_URL", default="https://api.hibob.com/v1")
# /v1 API: requests per minute per API key, and the customer id check-api-key reports.
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE = env.int("API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE", default=60)
API_CUSTOMER_ID = env.str("API_CUSTOMER_ID", default="")
# `/bench/trivial`, the floor `manage.py bench_api` measures against (config/bench.py). Never in production.
BENCH_VIEWS = env.bool("BENCH_VIEWS", default=False)
# Sandbox HR's OAuth: access-token lifetime (minutes); the client secret defaults to one derived
# from SECRET_KEY, used only between Relink and its own sandbox.
SANDBOX_OAUTH_ACCESS_TOKEN_MINUTES = env.int("SANDBOX_OAUTH_ACCESS_TOKEN_MINUTES", default=10)
SANDBOX_OAUTH_CLIENT_SECRET = env.str("SANDBOX_OAUTH_CLIENT_SECRET", default="")
