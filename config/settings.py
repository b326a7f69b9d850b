"""Vigil settings: one module, driven entirely by environment variables.

Defaults are safe for production (DEBUG off, secure cookies, HSTS); the embedded development
default (SQLite under ``var/`` and Kombu's filesystem broker) needs no server at all.
Every variable is listed in the README.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VIGIL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()


def _development_checkout() -> dict[str, str] | None:
    """The address ``make run`` serves this checkout at (``BIND``, ``PORT``), read from the file
    it leaves in the embedded default's directory; None when there is no such file, or when
    ``DATABASE_URL`` names a database: a deployment never turns into development mode because
    of a stray file."""
    if os.environ.get("DATABASE_URL"):
        return None
    try:
        lines = (VAR_DIR / "development").read_text().splitlines()
    except OSError:
        return None
    pairs = (line.partition("=") for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, _, value in pairs}


def _development_base_url(address: dict[str, str]) -> str:
    host = address.get("BIND") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # every interface: this machine's own name is the best guess
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{address.get('PORT') or 8000}"


# A checkout started with `make run` is in development mode (README, "Development mode"): DEBUG
# defaults to on there, so the manage.py commands the README shows work as typed.
_DEVELOPMENT = _development_checkout()
DEBUG = env.bool("DJANGO_DEBUG", default=_DEVELOPMENT is not None)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = "vigil-development-only-key-never-use-in-production-0123456789"

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Absolute base URL used in links that leave the web request (emails, API "url" fields). In
# development mode, the address `make run` serves at (its BIND and PORT).
VIGIL_BASE_URL = env.str(
    "VIGIL_BASE_URL",
    default=_development_base_url(_DEVELOPMENT)
    if DEBUG and _DEVELOPMENT is not None
    else "http://localhost:8000",
).rstrip("/")

INSTALLED_APPS = [
    "config.apps.VigilAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "anymail",
    "axes",
    "django_htmx",
    "incidents",
    "escalation",
    "communications",
    "reviews",
    "kpis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Error pages under /api/ and /hooks/ in the API's JSON shape (404, 500, ...).
    "incidents.api.middleware.JsonErrorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The signed-in person's time zone (their preference, else TIME_ZONE) for every page.
    "incidents.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: the admin's live panels ask for fragments instead of whole pages.
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last: turns a login refused by django-axes's lockout into the lockout page (429).
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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'vigil.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the single writer,
    # IMMEDIATE transactions take the write lock up front (no upgrade deadlocks), and the
    # timeout makes a writer wait for the lock instead of failing at once.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    _db.setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Redis ----------------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "vigil",
            # A Redis that stops answering costs a request at most a second per cache call
            # (redis-py waits forever by default), and every cache use on a request path
            # degrades instead of failing (README, "When the cache (Redis) is down").
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    # A file cache is shared by the web, worker and beat processes of the embedded setup.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            # The status site keeps one entry per file (a page per incident); past the default
            # 300 the file cache would cull a third of them at random.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# --- Celery -------------------------------------------------------------------------------------

_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (remote control) messages; Kombu's default is ./control in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # Kombu polls the folder once a second by default: a page would wait up to that long
        # at every hop (event, notification). Listing a folder ten times a second costs little.
        "polling_interval": env.float("VIGIL_EMBEDDED_BROKER_POLL_SECONDS", default=0.1),
    }
else:
    # Longer than any task's hard time limit, so a slow task is not handed to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_DEFAULT_QUEUE = "vigil"
CELERY_TASK_ROUTES = {
    "*.sweep": {"queue": "vigil.sweeps"},
    "*_sweep": {"queue": "vigil.sweeps"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "incidents-sla-sweep": {
        "task": "incidents.sla_sweep",
        "schedule": env.float("VIGIL_SLA_SWEEP_SECONDS", default=30.0),
        "options": {"expires": 25},
    },
    "escalation-requeue-sweep": {
        "task": "escalation.requeue_sweep",
        "schedule": env.float("VIGIL_OUTBOX_REQUEUE_SECONDS", default=60.0),
        "options": {"expires": 55},
    },
    "incidents-events-sweep": {
        "task": "incidents.events_sweep",
        "schedule": env.float("VIGIL_EVENT_SWEEP_SECONDS", default=10.0),
        "options": {"expires": 9},
    },
    "escalation-sweep": {
        "task": "escalation.sweep",
        "schedule": env.float("VIGIL_ESCALATION_SWEEP_SECONDS", default=30.0),
        "options": {"expires": 25},
    },
    # Starts and completes scheduled maintenance windows on time.
    "communications-maintenance-sweep": {
        "task": "communications.maintenance_sweep",
        "schedule": env.float("VIGIL_MAINTENANCE_SWEEP_SECONDS", default=30.0),
        "options": {"expires": 25},
    },
}
# Work about Sev 1–2 incidents (following their events, delivering their notifications) goes to
# this queue; run a worker that consumes it alone (the Procfile does), so a Sev 1 page never
# waits behind Sev 4 traffic or a replayed backlog.
VIGIL_URGENT_QUEUE = env.str("VIGIL_URGENT_QUEUE", default="vigil.urgent")

# --- Incident events ----------------------------------------------------------------------------

# Handlers of incident events (escalation, communications, reviews): attempts before a failing
# handler is given up (a timeline entry and an admin alert), its backoff, how long a dispatcher's
# claim on an event lasts, and how long a committed event may wait for its kick before the sweep
# queues it again.
VIGIL_EVENT_MAX_ATTEMPTS = env.int("VIGIL_EVENT_MAX_ATTEMPTS", default=6)
VIGIL_EVENT_BACKOFF_BASE_SECONDS = env.float("VIGIL_EVENT_BACKOFF_BASE_SECONDS", default=5.0)
VIGIL_EVENT_BACKOFF_MAX_SECONDS = env.float("VIGIL_EVENT_BACKOFF_MAX_SECONDS", default=300.0)
VIGIL_EVENT_LEASE_SECONDS = env.float("VIGIL_EVENT_LEASE_SECONDS", default=90.0)
VIGIL_EVENT_REQUEUE_AFTER_SECONDS = env.float("VIGIL_EVENT_REQUEUE_AFTER_SECONDS", default=10.0)

# How long a one-click acknowledge link in a notification stays valid.
VIGIL_ACK_LINK_MAX_AGE = env.int("VIGIL_ACK_LINK_MAX_AGE_SECONDS", default=24 * 3600)

# --- Email --------------------------------------------------------------------------------------

# In development, one line per email on the console (escalation.channels.log); Django's
# django.core.mail.backends.console.EmailBackend prints them whole.
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    default=(
        "escalation.channels.log.ConsoleEmailBackend"
        if DEBUG
        else "django.core.mail.backends.smtp.EmailBackend"
    ),
)
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="Vigil <vigil@localhost>")
SERVER_EMAIL = env.str("DJANGO_SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
# Any ESP through django-anymail: ANYMAIL_<SETTING>=value becomes ANYMAIL["<SETTING>"],
# e.g. ANYMAIL_MAILGUN_API_KEY with DJANGO_EMAIL_BACKEND=anymail.backends.mailgun.EmailBackend.
ANYMAIL = {
    key[len("ANYMAIL_") :]: value for key, value in os.environ.items() if key.startswith("ANYMAIL_")
}
# The one ESP whose inbound webhook (/anymail/<esp>/inbound/) is mounted, as anymail names it
# ("postmark", "mailgun", ...); every other anymail URL answers 404. Empty: no inbound email.
VIGIL_INBOUND_EMAIL_PROVIDER = env.str("VIGIL_INBOUND_EMAIL_PROVIDER", default="").strip().lower()
# The one ESP whose tracking webhook (/anymail/<esp>/tracking/) is mounted: delivered, bounced,
# complained and unsubscribed events of customer-facing email. Empty: no delivery tracking.
VIGIL_EMAIL_TRACKING_PROVIDER = env.str("VIGIL_EMAIL_TRACKING_PROVIDER", default="").strip().lower()
# Customer-facing email (status updates to subscribers and customer contacts): a mailto address
# for List-Unsubscribe besides the one-click link, and a Reply-To (e.g. the inbound reports
# address, so replies reach the incident's timeline). Empty: none.
VIGIL_EMAIL_UNSUBSCRIBE_MAILTO = env.str("VIGIL_EMAIL_UNSUBSCRIBE_MAILTO", default="")
VIGIL_CUSTOMER_EMAIL_REPLY_TO = env.str("VIGIL_CUSTOMER_EMAIL_REPLY_TO", default="")
# A fan-out's claim: another run may take it over when its worker stops renewing it this long.
VIGIL_FANOUT_LEASE_SECONDS = env.float("VIGIL_FANOUT_LEASE_SECONDS", default=120.0)
# Re-runs fan-outs whose task was lost and marks customer messages sent as the outbox sends them.
CELERY_BEAT_SCHEDULE["communications-fanout-sweep"] = {
    "task": "communications.fanout_sweep",
    "schedule": env.float("VIGIL_FANOUT_SWEEP_SECONDS", default=30.0),
    "options": {"expires": 25},
}

# --- Internationalisation -----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
# Dates and times as people read them everywhere in Vigil: "3 Dec 2026, 14:05 CET" (README,
# "Dates, times and time zones").
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = env.str("VIGIL_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security -----------------------------------------------------------------------------------

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# Health checks come from monitors over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# First: refuses a locked-out username or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Brute force: login lockout (django-axes) and API token failures -----------------------------

# django-axes records failed logins in the database (no Redis needed) and, after
# VIGIL_LOGIN_FAILURE_LIMIT of them, refuses logins for VIGIL_LOGIN_COOLOFF_MINUTES from the
# failure that locked, by what VIGIL_LOGIN_LOCKOUT names: "username,ip_address" locks the
# username from every address and the address for every username; "username+ip_address" only
# that username from that address. Attempts while locked out are refused without a write (they
# would otherwise grow the attempt's row without bound under an attack). Axes reads the client
# address with the failed-login watch's rule (REMOTE_ADDR, or X-Forwarded-For behind
# DJANGO_NUM_PROXIES proxies), so both agree.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("VIGIL_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("VIGIL_LOGIN_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [
    item.split("+") if "+" in item else item
    for item in env.list("VIGIL_LOGIN_LOCKOUT", default=["username", "ip_address"])
]
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    raise ImproperlyConfigured(
        "VIGIL_LOGIN_FAILURE_LIMIT and VIGIL_LOGIN_COOLOFF_MINUTES must be above zero."
    )
if not AXES_LOCKOUT_PARAMETERS or {
    name for item in AXES_LOCKOUT_PARAMETERS for name in ([item] if isinstance(item, str) else item)
} - {"username", "ip_address"}:
    raise ImproperlyConfigured(
        "VIGIL_LOGIN_LOCKOUT: comma-separated username, ip_address or username+ip_address."
    )
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "incidents.services.security.client_ip"
AXES_LOCKOUT_CALLABLE = "incidents.lockout.lockout_response"
# Bad API tokens: past this many failures from one address in a window of this many seconds,
# the address gets 429 until the window ends, its tokens unchecked.
VIGIL_API_TOKEN_FAILURE_LIMIT = env.int("VIGIL_API_TOKEN_FAILURE_LIMIT", default=20)
VIGIL_API_TOKEN_FAILURE_WINDOW_SECONDS = env.int(
    "VIGIL_API_TOKEN_FAILURE_WINDOW_SECONDS", default=300
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- REST API -----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Knox's, with bad tokens throttled per client address.
        "incidents.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "incidents.api.errors.api_exception_handler",
    # Each API token has its own budget (browser sessions one per user); anonymous callers
    # (schema, docs) one per address. Rates are "N/second|minute|hour|day".
    "DEFAULT_THROTTLE_CLASSES": ["incidents.api.throttling.PerTokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env.str("VIGIL_API_RATE", default="1200/minute"),
        "anon": env.str("VIGIL_API_ANON_RATE", default="120/minute"),
    },
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=None),
}
REST_KNOX = {"TOKEN_TTL": None, "AUTH_HEADER_PREFIX": "Token"}
SPECTACULAR_SETTINGS = {
    "TITLE": "Vigil API",
    "DESCRIPTION": (
        "Incident management: incidents, timeline, services and policy.\n\n"
        "Authenticate with `Authorization: Token <key>` (a key from "
        "`python manage.py apitoken <username>` or the admin). Every error has the same JSON "
        "shape (`status`, `code`, `detail`, `errors`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from Vigil's own static files: the docs work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "LevelEnum": "incidents.models.Level",
        "StatusEnum": "incidents.models.Status",
        "ActionEnum": "incidents.services.ACTIONS",
        "ServiceKindEnum": "incidents.models.ServiceKind",
        "TimelineKindEnum": "incidents.models.Kind",
        "NoteKindEnum": "incidents.serializers.incidents.NOTE_KINDS",
        "ReportKindEnum": "incidents.models.ReportKind",
        "ChannelEnum": "incidents.models.Channel",
        "IntegrationKindEnum": "incidents.models.IntegrationKind",
        "ComponentStatusEnum": "communications.models.ComponentStatus",
        "SubscriberKindEnum": "communications.models.SubscriberKind",
        "ActionItemKindEnum": "reviews.models.ActionKind",
        "ActionItemStatusEnum": "reviews.models.ActionStatus",
    },
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Logging ------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("VIGIL_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Escalation and notification delivery -------------------------------------------------------

# Channel → backend class. The log backend (development) writes notifications to the log; the
# real ones need the credentials below and fail loudly (admin alert) when those are missing.
_log_backend = "escalation.channels.log.LogBackend"
VIGIL_CHANNEL_BACKENDS = {
    "email": env.str("VIGIL_CHANNEL_EMAIL", default="escalation.channels.email.EmailBackend"),
    "slack": env.str(
        "VIGIL_CHANNEL_SLACK",
        default=_log_backend if DEBUG else "escalation.channels.slack.SlackBackend",
    ),
    "sms": env.str(
        "VIGIL_CHANNEL_SMS",
        default=_log_backend if DEBUG else "escalation.channels.twilio.TwilioSmsBackend",
    ),
    "phone": env.str(
        "VIGIL_CHANNEL_PHONE",
        default=_log_backend if DEBUG else "escalation.channels.twilio.TwilioVoiceBackend",
    ),
    "teams": env.str(
        "VIGIL_CHANNEL_TEAMS",
        default=_log_backend if DEBUG else "escalation.channels.teams.TeamsBackend",
    ),
    "webhook": env.str(
        "VIGIL_CHANNEL_WEBHOOK",
        default=_log_backend if DEBUG else "escalation.channels.webhook.WebhookBackend",
    ),
}
# Outbox delivery: attempts before a notification is failed (and alerted on), exponential
# backoff with jitter between them, and how long a "sending" claim lasts before the requeue
# sweep assumes its worker died (longer than the delivery task's 60 s hard time limit).
VIGIL_NOTIFY_MAX_ATTEMPTS = env.int("VIGIL_NOTIFY_MAX_ATTEMPTS", default=6)
VIGIL_NOTIFY_BACKOFF_BASE_SECONDS = env.float("VIGIL_NOTIFY_BACKOFF_BASE_SECONDS", default=10.0)
VIGIL_NOTIFY_BACKOFF_MAX_SECONDS = env.float("VIGIL_NOTIFY_BACKOFF_MAX_SECONDS", default=600.0)
VIGIL_NOTIFY_LEASE_SECONDS = env.float("VIGIL_NOTIFY_LEASE_SECONDS", default=120.0)
VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS = env.float("VIGIL_NOTIFY_REQUEUE_AFTER_SECONDS", default=60.0)
VIGIL_NOTIFY_HTTP_TIMEOUT_SECONDS = env.float("VIGIL_NOTIFY_HTTP_TIMEOUT_SECONDS", default=10.0)
# Slack: a bot token (chat.postMessage to the recipient's channel or user id) or an incoming
# webhook (one fixed channel).
VIGIL_SLACK_BOT_TOKEN = env.str("VIGIL_SLACK_BOT_TOKEN", default="")
VIGIL_SLACK_WEBHOOK_URL = env.str("VIGIL_SLACK_WEBHOOK_URL", default="")
VIGIL_SLACK_API_URL = env.str("VIGIL_SLACK_API_URL", default="https://slack.com/api/")
# Twilio: SMS and voice calls.
VIGIL_TWILIO_ACCOUNT_SID = env.str("VIGIL_TWILIO_ACCOUNT_SID", default="")
VIGIL_TWILIO_AUTH_TOKEN = env.str("VIGIL_TWILIO_AUTH_TOKEN", default="")
VIGIL_TWILIO_FROM_NUMBER = env.str("VIGIL_TWILIO_FROM_NUMBER", default="")
VIGIL_TWILIO_MESSAGING_SERVICE_SID = env.str("VIGIL_TWILIO_MESSAGING_SERVICE_SID", default="")
VIGIL_TWILIO_STATUS_CALLBACK_URL = env.str("VIGIL_TWILIO_STATUS_CALLBACK_URL", default="")
VIGIL_TWILIO_API_URL = env.str("VIGIL_TWILIO_API_URL", default="")
# Microsoft Teams and the signed generic webhook: a default URL and optional named ones
# ("ops=https://...,exec=https://..."); a notification's recipient picks a name, never a URL.
VIGIL_TEAMS_WEBHOOK_URL = env.str("VIGIL_TEAMS_WEBHOOK_URL", default="")
VIGIL_TEAMS_WEBHOOK_URLS = env.dict("VIGIL_TEAMS_WEBHOOK_URLS", default={})
VIGIL_WEBHOOK_URL = env.str("VIGIL_WEBHOOK_URL", default="")
VIGIL_WEBHOOK_URLS = env.dict("VIGIL_WEBHOOK_URLS", default={})
VIGIL_WEBHOOK_SECRET = env.str("VIGIL_WEBHOOK_SECRET", default="")
# Mastodon: the company's account, for posts about widespread outages (server URL, an access
# token with the write:statuses scope, and the posts' visibility).
VIGIL_MASTODON_API_BASE_URL = env.str("VIGIL_MASTODON_API_BASE_URL", default="")
VIGIL_MASTODON_ACCESS_TOKEN = env.str("VIGIL_MASTODON_ACCESS_TOKEN", default="")
VIGIL_MASTODON_VISIBILITY = env.str("VIGIL_MASTODON_VISIBILITY", default="public")
# Status-page subscribers' own webhooks (channel "subscriber"): each URL's signing key is derived
# from this key (empty: from SECRET_KEY); private, loopback and other non-public addresses (and
# plain http) are refused unless ALLOW_PRIVATE is on (development and tests only).
VIGIL_SUBSCRIBER_WEBHOOK_KEY = env.str("VIGIL_SUBSCRIBER_WEBHOOK_KEY", default="")
VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = env.bool(
    "VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE", default=False
)
# /healthz: how late a sweep may be before the watchdog answers 503, and how long it waits
# for the broker.
VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS = env.float("VIGIL_HEALTH_SWEEP_MAX_AGE_SECONDS", default=120.0)
VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS = env.float("VIGIL_HEALTH_BROKER_TIMEOUT_SECONDS", default=2.0)
# /metrics (Prometheus): off (404) unless a bearer token or an address allowlist (addresses and
# CIDR networks, the client's address as DJANGO_NUM_PROXIES derives it) is set; with both, a
# scrape needs both.
VIGIL_METRICS_TOKEN = env.str("VIGIL_METRICS_TOKEN", default="").strip()
VIGIL_METRICS_ALLOW = [
    item.strip() for item in env.list("VIGIL_METRICS_ALLOW", default=[]) if item.strip()
]
if VIGIL_METRICS_TOKEN and len(VIGIL_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("VIGIL_METRICS_TOKEN must be at least 16 characters long.")
for _network in VIGIL_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"VIGIL_METRICS_ALLOW: {_network!r} is not an IP address or network."
        ) from None

# --- Detection ----------------------------------------------------------------------------------

# Inbound webhooks (/hooks/...): the largest body accepted, PagerDuty events allowed per routing
# key ("N/second|minute|hour"; empty disables the limit), how far a Grafana signature timestamp
# may be off Vigil's clock, and how long a stored delivery may wait for its processing task
# before the sweep queues it again.
VIGIL_HOOK_MAX_BODY_BYTES = env.int("VIGIL_HOOK_MAX_BODY_BYTES", default=1024 * 1024)
VIGIL_PAGERDUTY_RATE = env.str("VIGIL_PAGERDUTY_RATE", default="1200/minute")
# The replay window of the signed webhooks (generic, Grafana): how far a signed timestamp may be
# off Vigil's clock; the signatures accepted inside it are remembered, each accepted once.
# VIGIL_GRAFANA_SIGNATURE_MAX_AGE_SECONDS is its former, Grafana-only name.
VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS = env.float(
    "VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS",
    default=env.float("VIGIL_GRAFANA_SIGNATURE_MAX_AGE_SECONDS", default=300.0),
)
if not 0 < VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS <= 86400:  # also refuses nan and inf
    raise ImproperlyConfigured("VIGIL_HOOK_SIGNATURE_MAX_AGE_SECONDS must be in (0, 86400].")
VIGIL_ALERT_REQUEUE_AFTER_SECONDS = env.float("VIGIL_ALERT_REQUEUE_AFTER_SECONDS", default=60.0)
# How long a web process keeps an integration it looked up (disabling one or rotating its
# secret takes at most this long to reach every process).
VIGIL_HOOK_INTEGRATION_CACHE_SECONDS = env.float(
    "VIGIL_HOOK_INTEGRATION_CACHE_SECONDS", default=5.0
)
# Drain tasks queued when deliveries arrive: how many worker processes share a stream of them.
VIGIL_ALERT_DRAINS = env.int("VIGIL_ALERT_DRAINS", default=2)
# CloudWatch alarms through Amazon SNS: the hosts (a regular expression, matched whole) an SNS
# message's signing certificate and subscription URL may be fetched from, over HTTPS only, and how
# old a message's signed Timestamp may be (SNS retries an HTTP/S delivery for at most an hour).
VIGIL_SNS_CERT_HOST_PATTERN = env.str(
    "VIGIL_SNS_CERT_HOST_PATTERN", default=r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
)
VIGIL_SNS_MAX_AGE_SECONDS = env.float("VIGIL_SNS_MAX_AGE_SECONDS", default=3600.0)
if not 0 < VIGIL_SNS_MAX_AGE_SECONDS <= 86400:  # also refuses nan and inf
    raise ImproperlyConfigured("VIGIL_SNS_MAX_AGE_SECONDS must be in (0, 86400].")
# --- Public communication (status page) ----------------------------------------------------------

# How long a rendered status site is served before a request re-renders it (publishing,
# component changes and maintenance steps re-render it at once).
VIGIL_STATUS_FRESH_SECONDS = env.float("VIGIL_STATUS_FRESH_SECONDS", default=60.0)
# How often at most a web process asks the cache whether the status files it keeps in memory are
# still the fresh render (a change shows on every process within this; 0: ask on every request).
VIGIL_STATUS_LOCAL_SECONDS = env.float("VIGIL_STATUS_LOCAL_SECONDS", default=1.0)
# A STORAGES alias the status site is also written to on every change (static export, hosted
# apart from Vigil); empty: no export.
VIGIL_STATUS_EXPORT_STORAGE = env.str("VIGIL_STATUS_EXPORT_STORAGE", default="")
# Public subscriptions: subscribe requests allowed per client address and per email address in
# any sliding window ("N/second|minute|hour|day"; empty or 0: no limit), and how long at least
# between two subscription emails (confirmation, "already subscribed") to one address.
VIGIL_SUBSCRIBE_IP_RATE = env.str("VIGIL_SUBSCRIBE_IP_RATE", default="20/hour")
VIGIL_SUBSCRIBE_ADDRESS_RATE = env.str("VIGIL_SUBSCRIBE_ADDRESS_RATE", default="10/day")
VIGIL_SUBSCRIBE_RESEND_MINUTES = env.float("VIGIL_SUBSCRIBE_RESEND_MINUTES", default=15.0)
# The satisfaction survey's public links: requests allowed per client address, as above.
VIGIL_SURVEY_IP_RATE = env.str("VIGIL_SURVEY_IP_RATE", default="120/hour")
# The 30-minute rule: how often the sweep reminds the communications lead of a first public
# update coming due and records the misses.
CELERY_BEAT_SCHEDULE["communications-first-update-sweep"] = {
    "task": "communications.first_update_sweep",
    "schedule": env.float("VIGIL_FIRST_UPDATE_SWEEP_SECONDS", default=15.0),
    "options": {"expires": 12},
}

# The stakeholder schedule (§5.2): how often the sweep sends the groups' updates that are due
# and reminds the communications lead before them.
CELERY_BEAT_SCHEDULE["communications-stakeholder-sweep"] = {
    "task": "communications.stakeholder_sweep",
    "schedule": env.float("VIGIL_STAKEHOLDER_SWEEP_SECONDS", default=30.0),
    "options": {"expires": 25},
}

# Enterprise direct contact: how often the sweep reminds account owners of their open tasks (each
# task is reminded every direct_contact_reminder_minutes of the communication policy).
CELERY_BEAT_SCHEDULE["communications-direct-contact-sweep"] = {
    "task": "communications.direct_contact_sweep",
    "schedule": env.float("VIGIL_DIRECT_CONTACT_SWEEP_SECONDS", default=60.0),
    "options": {"expires": 55},
}

CELERY_BEAT_SCHEDULE["incidents-alert-delivery-sweep"] = {
    "task": "incidents.alert_delivery_sweep",
    "schedule": env.float("VIGIL_ALERT_SWEEP_SECONDS", default=30.0),
    "options": {"expires": 25},
}

# Heartbeats: how often the sweep opens a "no signal" incident for each integration whose
# heartbeat is overdue (an incident opens at most this long after the due time).
CELERY_BEAT_SCHEDULE["incidents-heartbeat-sweep"] = {
    "task": "incidents.heartbeat_sweep",
    "schedule": env.float("VIGIL_HEARTBEAT_SWEEP_SECONDS", default=60.0),
    "options": {"expires": 55},
}

# The 48-hour documentation rule (§4.2 step 4): how often the sweep reminds the incident manager
# of an incident report coming due and records the misses.
CELERY_BEAT_SCHEDULE["reviews-documentation-sweep"] = {
    "task": "reviews.documentation_sweep",
    "schedule": env.float("VIGIL_DOCUMENTATION_SWEEP_SECONDS", default=60.0),
    "options": {"expires": 55},
}

# Action items (issue 12): how often the sweep sends owners their reminders (before, on and
# after the due date; each once).
CELERY_BEAT_SCHEDULE["reviews-action-item-reminder-sweep"] = {
    "task": "reviews.action_item_reminder_sweep",
    "schedule": env.float("VIGIL_ACTION_REMINDER_SWEEP_SECONDS", default=300.0),
    "options": {"expires": 290},
}

# Post-incident review booking (issue 12): public holidays skipped by the review's business-day
# deadline (the `holidays` package's ISO 3166 country code and optional subdivision; an empty
# country counts weekends and company closures only), and how often the overdue sweep runs.
VIGIL_HOLIDAYS_COUNTRY = env.str("VIGIL_HOLIDAYS_COUNTRY", default="US")
VIGIL_HOLIDAYS_SUBDIVISION = env.str("VIGIL_HOLIDAYS_SUBDIVISION", default="")
CELERY_BEAT_SCHEDULE["reviews-overdue-sweep"] = {
    "task": "reviews.review_overdue_sweep",
    "schedule": env.float("VIGIL_REVIEW_OVERDUE_SWEEP_SECONDS", default=300.0),
    "options": {"expires": 290},
}

# KPIs (§9): the stored monthly rollups. The sweep recomputes the months a late change marked
# stale; the nightly refresh recomputes the current and previous month and fills any missing one.
CELERY_BEAT_SCHEDULE["kpis-rollup-sweep"] = {
    "task": "kpis.rollup_sweep",
    "schedule": env.float("VIGIL_KPI_ROLLUP_SWEEP_SECONDS", default=300.0),
    "options": {"expires": 280},
}
CELERY_BEAT_SCHEDULE["kpis-rollup-refresh"] = {
    "task": "kpis.rollup_refresh",
    "schedule": crontab(hour=2, minute=30),
    "options": {"expires": 3600},
}

# The monthly report (§9.2): generated and e-mailed for the last month that has ended in the KPI
# policy's time zone. Beat reads its crontab in TIME_ZONE (VIGIL_TIME_ZONE); running on the 1st
# and the 2nd covers a policy zone behind it (06:00 UTC on the 1st is still the last day of the
# month in California). Once the report is e-mailed, a run does nothing.
CELERY_BEAT_SCHEDULE["kpis-monthly-report"] = {
    "task": "kpis.monthly_report",
    "schedule": crontab(day_of_month="1,2", hour=6, minute=0),
    "options": {"expires": 6 * 3600},
}
