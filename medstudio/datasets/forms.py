from django import forms
from django.utils.translation import gettext_lazy as _

from .formats import KINDS


class ImportForm(forms.Form):
    file = forms.FileField(label=_("File"), help_text=_("JSONL, CSV or Parquet."))
    dataset = forms.CharField(max_length=200, label=_("Dataset"), help_text=_("A new name creates a dataset; an existing one adds to it."))
    kind = forms.ChoiceField(label=_("Kind"), choices=[("auto", _("auto (from the fields)"))] + [(k, k) for k in KINDS])
    format = forms.ChoiceField(label=_("Format"), choices=[("", _("from the file name")), ("jsonl", "jsonl"), ("csv", "csv"),
                                        ("parquet", "parquet")], required=False)
    skip_bad = forms.BooleanField(required=False, label=_("Skip bad lines"),
                                  help_text=_("Import the good lines and list the bad ones (default: reject the file)."))
    benchmark = forms.BooleanField(required=False, label=_("Evaluation benchmark"),
                                   help_text=_("Flag the dataset as a benchmark: training data is decontaminated against it."))
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ExportForm(forms.Form):
    format = forms.ChoiceField(label=_("Format"), choices=[("jsonl", "JSONL"), ("parquet", "Parquet")])
    lang = forms.CharField(label=_("Language"), required=False)
    q = forms.CharField(label=_("Text contains"), required=False)
