"""The role each URL needs. tests/test_url_permissions.py walks every URL pattern of the project
and fails when one is missing here or is not protected as stated, so no view slips in unprotected.

"public": anyone (login, token endpoint); "anon-redirect": redirects anonymous users to login and
serves every role (the home page). Otherwise the lowest role allowed: clinician < curator < admin.
"""

URL_ROLES: dict[str, str] = {
    # platform
    "home": "anon-redirect",
    "accounts:login": "public",
    "accounts:logout": "public",
    "accounts:users": "admin",
    "accounts:user_update": "admin",
    "accounts:profile": "clinician",
    "audit:list": "admin",
    "jobs:list": "curator",
    "jobs:detail": "curator",
    "jobs:cancel": "curator",
    "datasets:list": "clinician",
    "datasets:import": "curator",
    "datasets:detail": "clinician",
    "datasets:records": "clinician",
    "datasets:record": "clinician",
    "datasets:export": "curator",
    "datasets:export_download": "curator",
    "datasets:flag": "curator",
    "datasets:delete": "admin",
    "api:token": "public",
    "api:schema": "clinician",
    "api:api-root": "clinician",
    "api:dataset-list": "clinician",
    "api:dataset-detail": "clinician",
    "api:dataset-records": "clinician",
    "api:record-detail": "clinician",
    "api:import-list": "curator",
    "api:export-list": "curator",
    "api:export-detail": "curator",
    "api:export-download": "curator",
    "api:job-list": "curator",
    "api:job-detail": "curator",
    "api:job-cancel": "curator",
    # curation
    "curation:run_start": "curator",
    # studio
    # modelscorers
    # annotation
    # preferences
    # training
    # evaluation
}
