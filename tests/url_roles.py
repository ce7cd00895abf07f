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
    "curation:redact": "curator",
    "curation:run_detail": "curator",
    # studio
    # modelscorers
    # annotation
    "annotation:home": "clinician",
    "annotation:label": "clinician",
    "annotation:submit": "clinician",
    "annotation:skip": "clinician",
    "annotation:undo": "clinician",
    "annotation:question_new": "curator",
    "annotation:queue_new": "curator",
    "annotation:queue_detail": "curator",
    "annotation:queue_settings": "curator",
    "annotation:judge": "curator",
    "annotation:agreement": "curator",
    "annotation:consensus": "curator",
    "annotation:adjudicate": "curator",
    "annotation:export": "curator",
    # preferences
    # training
    "training:runs": "clinician",
    "training:run_new": "admin",
    "training:run_detail": "clinician",
    "training:run_cancel": "admin",
    "training:models": "clinician",
    "training:model_register": "admin",
    "training:model_detail": "clinician",
    # evaluation
    "evaluation:home": "curator",
    "evaluation:run_new": "admin",
    "evaluation:run": "curator",
    "evaluation:run_repeat": "admin",
    "evaluation:leaderboard": "curator",
    "evaluation:compare": "curator",
    "evaluation:hits": "curator",
    "evaluation:hit_review": "curator",
}
