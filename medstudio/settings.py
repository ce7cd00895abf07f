"""MedStudio settings, read from the environment in one place.

Embedded default: SQLite (WAL, busy timeout) and a local Celery worker over kombu's filesystem
transport, so `make run` needs no external service. Production: set DATABASE_URL (Postgres) and
CELERY_BROKER_URL (Redis).
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MEDSTUDIO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    # Local installs get a random key kept under var/ (never in the repo).
    path = VAR_DIR / "secret_key"
    if not path.exists():
        import secrets

        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    # platform
    "medstudio.accounts",
    "medstudio.audit",
    "medstudio.jobs",
    "medstudio.datasets",
    "medstudio.annotation",
    "medstudio.backends",
    "medstudio.handoffs",
    # pipeline stages
    "curation",
    "curation.studio",
    "curation.modelscorers",
    "preferences",
    "training",
    "training.evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The UI language: the switcher's cookie, else the browser's Accept-Language (en, zh-hans).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

# Login rate limiting (django-axes): after AXES_FAILURE_LIMIT failed logins for one username from
# one address, that pair is locked out for the cool-off period; a successful login resets it.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("MEDSTUDIO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MEDSTUDIO_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
# Behind a proxy every client shares the proxy's address, so the pair still locks one username
# only (never the whole site); install django-axes[ipware] to read X-Forwarded-For instead.

# MEDSTUDIO_PRODUCTION=1: served over HTTPS behind a proxy that sets X-Forwarded-Proto
# (`manage.py check --deploy` is then clean). Off for the embedded default on 127.0.0.1.
PRODUCTION = env_bool("MEDSTUDIO_PRODUCTION", False)
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("MEDSTUDIO_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"

ROOT_URLCONF = "medstudio.urls"
WSGI_APPLICATION = "medstudio.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

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
                "medstudio.accounts.context_processors.role",
            ],
            # {% echart option %} on every page (medstudio/charts.py).
            "builtins": ["medstudio.charts"],
        },
    }
]

# --- database -------------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "medstudio.sqlite3"
_SQLITE_OPTIONS = {
    # WAL lets the web process read while the worker writes; IMMEDIATE transactions and a busy
    # timeout make concurrent writers wait instead of failing with "database is locked".
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
_db_url = os.environ.get("DATABASE_URL", "") or f"sqlite:///{SQLITE_PATH}"
DATABASES = {"default": dj_database_url.parse(_db_url, conn_max_age=0 if _db_url.startswith("sqlite") else 60,
                                              conn_health_checks=not _db_url.startswith("sqlite"))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = dict(_SQLITE_OPTIONS)
    # A file (not :memory:) so that a real worker process can share the test database.
    # Per process, so parallel test runs never share (and destroy) one file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_medstudio_{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# --- files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Apache ECharts, installed by `make setup` (npm ci) and served as /static/vendor/echarts/.
ECHARTS_DIR = Path(os.environ.get("MEDSTUDIO_ECHARTS_DIR", BASE_DIR / "node_modules" / "echarts" / "dist"))
if ECHARTS_DIR.is_dir():
    STATICFILES_DIRS.append(("vendor/echarts", ECHARTS_DIR))
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(os.environ.get("MEDSTUDIO_MEDIA_ROOT", VAR_DIR / "media"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024  # larger uploads stream to a temp file
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en"
# Simplified Chinese and English. Catalogues live in locale/ and are compiled by `make setup`
# (compilemessages); record text, numbers and dates are never translated.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- cache and sessions ---------------------------------------------------------------------
# MEDSTUDIO_CACHE_URL=redis://host:6379/1 gives every web process one shared cache (studio counts)
# and keeps sessions in it in front of the database (cached_db: a request reads its session from
# Redis, not PostgreSQL; logouts still reach every process). Without it the cache is per process
# and sessions stay in the database only (a per-process cache could keep a logged-out session alive).
CACHE_URL = os.environ.get("MEDSTUDIO_CACHE_URL", "")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "medstudio"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(os.environ.get("MEDSTUDIO_BROKER_DIR", VAR_DIR / "broker"))
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's default control folder is ./control, relative to wherever the process starts
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
    # The same transport with atomic writes (medstudio/jobs/broker.py explains the race it closes).
    CELERY_BROKER_TRANSPORT = "medstudio.jobs.broker:Transport"
elif CELERY_BROKER_URL.startswith("redis"):
    # Longer than the longest job, so an unacked job is not redelivered while still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 12 * 3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "jobs-recover": {"task": "medstudio.jobs.recover", "schedule": 30.0},
}
JOB_QUEUES = ("default", "cpu", "gpu", "training")
# Niceness of job workers and in-process batch commands (medstudio/jobs/priority.py): below the
# web server, so people clicking get a shared core first. 0 leaves the priority as it is.
JOB_NICE = env_int("MEDSTUDIO_JOB_NICE", 10)
# Run jobs inline instead of through a broker (tests of services; never in production).
JOBS_EAGER = env_bool("MEDSTUDIO_JOBS_EAGER", False)

# Corpus jobs (curation/corpus): the Ray job-submission address (http://HEAD:8265). Empty: the worker
# starts a local Ray head with its dashboard (MEDSTUDIO_RAY_LOCAL_CPUS, default 2).
RAY_ADDRESS = os.environ.get("RAY_ADDRESS", "")
RAY_LOCAL_CPUS = env_int("MEDSTUDIO_RAY_LOCAL_CPUS", 2)
# Ray 2.5x turns token authentication on for any new cluster once ~/.ray/auth_token exists (a bare
# `ray.init()` anywhere on the machine writes one), and clients without the token are then refused.
# The local head and its clients agree on "disabled" unless the deployment says otherwise
# (RAY_AUTH_MODE=token plus RAY_AUTH_TOKEN for a cluster that uses tokens).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Where corpus score files go when a corpus names no output URI (a folder or s3://, gs:// URI).
CORPUS_OUTPUT = os.environ.get("MEDSTUDIO_CORPUS_OUTPUT", str(VAR_DIR / "corpus"))
# corpus dedup: MinHash signatures in Ray's object store per verification round (128 x 4 bytes
# each; the default is 256 MB). More per round: fewer rounds, each re-reading the signature files.
CORPUS_DEDUP_SIGS_PER_ROUND = env_int("MEDSTUDIO_DEDUP_SIGS_PER_ROUND", 500_000)
# A running job whose heartbeat is older than this is considered orphaned and resumed.
JOB_STALE_SECONDS = env_int("MEDSTUDIO_JOB_STALE_SECONDS", 120)
# A job still queued after this long is sent to the broker again (its message may have been lost
# with a broker or worker crash); a duplicate delivery is harmless (job_execute claims a job once).
JOB_RESEND_SECONDS = env_int("MEDSTUDIO_JOB_RESEND_SECONDS", 600)

# --- imports --------------------------------------------------------------------------------
IMPORT_BATCH_SIZE = env_int("MEDSTUDIO_IMPORT_BATCH_SIZE", 1000)
# A new dataset on PostgreSQL streams its rows into COPY: one COPY per this many rows (each COPY's
# end waits for the server to catch up, so bigger batches overlap Python and the server better;
# the rows are not held in memory either way)
IMPORT_STREAM_BATCH_SIZE = env_int("MEDSTUDIO_IMPORT_STREAM_BATCH_SIZE", 20000)
IMPORT_MAX_LINE_BYTES = env_int("MEDSTUDIO_IMPORT_MAX_LINE_BYTES", 16 * 1024 * 1024)
IMPORT_MAX_REPORTED_ERRORS = 200

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["medstudio.accounts.permissions.IsClinician"],
    "DEFAULT_SCHEMA_CLASS": "medstudio.api_schema.AutoSchema",  # documents 400/401/403/404 everywhere
    "DEFAULT_PAGINATION_CLASS": "medstudio.api_pagination.IdCursorPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MedStudio API",
    "DESCRIPTION": "Datasets, records, imports, exports, jobs and pipeline stages.",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["medstudio.accounts.permissions.IsClinician"],
}

# --- models and inference (every default is a setting; see docs/ARCHITECTURE.md) ----------------
MEDSTUDIO_EMBEDDING_MODEL = os.environ.get("MEDSTUDIO_EMBEDDING_MODEL", "BAAI/bge-m3")
MEDSTUDIO_EMBEDDING_URL = os.environ.get("MEDSTUDIO_EMBEDDING_URL", "")
MEDSTUDIO_CHAT_URL = os.environ.get("MEDSTUDIO_CHAT_URL", "")
MEDSTUDIO_CHAT_MODEL = os.environ.get("MEDSTUDIO_CHAT_MODEL", "Qwen/Qwen2.5-7B-Instruct")
MEDSTUDIO_CHAT_API_KEY = os.environ.get("MEDSTUDIO_CHAT_API_KEY", "EMPTY")
MEDSTUDIO_SCORING_LM = os.environ.get("MEDSTUDIO_SCORING_LM", "Qwen/Qwen2.5-0.5B-Instruct")
MEDSTUDIO_DEITA_COMPLEXITY_MODEL = os.environ.get("MEDSTUDIO_DEITA_COMPLEXITY_MODEL", "hkust-nlp/deita-complexity-scorer")
MEDSTUDIO_DEITA_QUALITY_MODEL = os.environ.get("MEDSTUDIO_DEITA_QUALITY_MODEL", "hkust-nlp/deita-quality-scorer")
MEDSTUDIO_MODEL_DIR = Path(os.environ.get("MEDSTUDIO_MODEL_DIR", VAR_DIR / "models"))
MEDSTUDIO_SHARED_DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", BASE_DIR.parent / "shared" / "data"))

# --- area settings (each team adds its own below, one block each) ---------------------------
# curation
# annotation
# preferences
# training
# evaluation

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("MEDSTUDIO_LOG_LEVEL", "INFO")},
}
