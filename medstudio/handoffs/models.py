"""Hand-off entities: what one pipeline stage produces and another consumes.

They used to live inside the stages (scorer runs in curation, selections and mixtures in the
studio, preference sets in preferences), which made the platform and other stages import a
stage. They moved here with their tables unchanged (``db_table`` keeps the old names, so the
move was a state-only migration and existing rows stayed where they were).
"""
from django.conf import settings
from django.db import models


class ScorerRun(models.Model):
    """One run of one scorer (with its version and params) over one dataset."""

    dataset = models.ForeignKey("datasets.Dataset", related_name="scorer_runs", on_delete=models.CASCADE)
    scorer = models.CharField(max_length=64, db_index=True, help_text="Registry name: rules, pii, minhash, datarater...")
    version = models.CharField(max_length=32, default="1")
    params = models.JSONField(default=dict, blank=True)
    model_ref = models.CharField(max_length=500, blank=True, help_text="Model path / hub id / trained-model version used.")
    status = models.CharField(max_length=16, default="queued")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL)
    summary = models.JSONField(default=dict, blank=True, help_text="Aggregates written when the run finishes.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "curation_scorerrun"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.scorer} v{self.version} on {self.dataset_id} (#{self.pk})"


class Score(models.Model):
    """A scorer's value (and keep/drop verdict) for one record in one run."""

    run = models.ForeignKey(ScorerRun, related_name="scores", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="scores", on_delete=models.CASCADE)
    value = models.FloatField(null=True, blank=True, help_text="Null = unscored (never a silent default).")
    keep = models.BooleanField(null=True, blank=True)
    reason = models.CharField(max_length=100, blank=True, help_text="Why a filter dropped the record.")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "curation_score"
        constraints = [models.UniqueConstraint(fields=["run", "record"], name="score_unique_run_record")]
        indexes = [
            models.Index(fields=["run", "value"], name="curation_sc_run_id_769a5e_idx"),
            models.Index(fields=["run", "keep", "reason"], name="curation_sc_run_id_919d3b_idx"),
        ]


class Recipe(models.Model):
    """A named set of threshold conditions, saved in numbered versions."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "studio_recipe"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RecipeVersion(models.Model):
    """One immutable version: the datasets it applies to and its conditions (curation/studio/spec.py)."""

    recipe = models.ForeignKey(Recipe, related_name="versions", on_delete=models.CASCADE)
    number = models.PositiveIntegerField()
    datasets = models.ManyToManyField("datasets.Dataset", related_name="+")
    conditions = models.JSONField(help_text="Canonical {'bounds': [...], 'flags': [...]} (curation/studio/spec.py).")
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "studio_recipeversion"
        ordering = ["recipe_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["recipe", "number"], name="studio_recipe_version_unique")]

    def __str__(self) -> str:
        return f"{self.recipe.name} v{self.number}"


class Selection(models.Model):
    """A frozen set of records (from applying a recipe version): exact ids, counts, tokens, content hash."""

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200)
    recipe_version = models.ForeignKey(RecipeVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="selections")
    datasets = models.ManyToManyField("datasets.Dataset", related_name="+")
    conditions = models.JSONField(default=dict, help_text="The conditions as applied (a copy, so a deleted recipe loses nothing).")
    runs = models.JSONField(default=list, help_text="Scorer runs the conditions resolved to: [{dataset, scorer, run, version}] "
                                                    "(a copy for display; the foreign keys are `scorer_runs`).")
    scorer_runs = models.ManyToManyField(ScorerRun, related_name="selections", blank=True,
                                         help_text="The scorer runs whose scores decided what was kept.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.BUILDING)
    n_records = models.BigIntegerField(default=0)
    n_tokens = models.BigIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True, help_text="Records and tokens by language and by source.")
    content_hash = models.CharField(max_length=64, blank=True, help_text="sha256 over (record id, text hash) in id order.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "studio_selection"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class SelectionRecord(models.Model):
    selection = models.ForeignKey(Selection, related_name="items", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="+", on_delete=models.CASCADE)

    class Meta:
        db_table = "studio_selectionrecord"
        constraints = [models.UniqueConstraint(fields=["selection", "record"], name="studio_selection_record_unique")]


class Mixture(models.Model):
    """A CPT mixture plan over tagged selections (docs/METHODS.md 1.6), its drawn shards and achieved ratios."""

    name = models.CharField(max_length=200)
    stage = models.CharField(max_length=16, default="stable", help_text="stable | boost | custom")
    budget_tokens = models.BigIntegerField()
    targets = models.JSONField(help_text="{'categories': {tag: weight}, 'langs': {lang: weight}}")
    strategy = models.CharField(max_length=16, default="independent")
    sources = models.JSONField(help_text="[{'selection': id, 'category': tag}] in plan order (the foreign keys are `parts`).")
    seed = models.CharField(max_length=64, default="medstudio-mix")
    shard_tokens = models.BigIntegerField(default=50_000_000)
    plan = models.JSONField(default=dict, blank=True)
    achieved = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, default="planned")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    path = models.CharField(max_length=500, blank=True)
    files = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "studio_mixture"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class MixtureSource(models.Model):
    """One tagged selection a mixture draws from."""

    mixture = models.ForeignKey(Mixture, related_name="parts", on_delete=models.CASCADE)
    selection = models.ForeignKey(Selection, related_name="mixture_parts", on_delete=models.PROTECT)
    category = models.CharField(max_length=64, help_text="Mixture category tag (medical, general, sft...).")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["mixture_id", "position"]
        constraints = [models.UniqueConstraint(fields=["mixture", "selection"], name="handoffs_mixture_source_unique")]


class PreferenceSet(models.Model):
    """A named collection of DPO pairs (the pairs and the runs that build them live in preferences/)."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "preferences_preferenceset"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class CorpusSelection(models.Model):
    """A frozen selection of a sharded corpus (issue 16): the curation stage's threshold studio writes
    a manifest (conditions, each score file's sha256, one Parquet file of kept ids per shard) and
    registers it here; training reads the kept documents shard by shard through the data source
    ``corpus_selection``. Rows of the corpus never enter the database."""

    name = models.CharField(max_length=200, unique=True)
    corpus = models.CharField(max_length=200, help_text="Name of the corpus it was frozen from.")
    path = models.CharField(max_length=1000, help_text="Folder holding manifest.json and kept/<shard>.kept.parquet.")
    manifest_sha256 = models.CharField(max_length=64)
    conditions = models.JSONField(default=list, help_text="[[column, op, value], ...] as frozen.")
    n_docs = models.BigIntegerField(default=0, help_text="Documents in the score files it was frozen over.")
    n_records = models.BigIntegerField(default=0, help_text="Documents kept (exact).")
    n_chars = models.BigIntegerField(default=0, help_text="Characters of the kept documents.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.corpus})"
