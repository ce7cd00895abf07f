from django import forms

from .formats import KINDS


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL, CSV or Parquet.")
    dataset = forms.CharField(max_length=200, help_text="A new name creates a dataset; an existing one adds to it.")
    kind = forms.ChoiceField(choices=[("auto", "auto (from the fields)")] + [(k, k) for k in KINDS])
    format = forms.ChoiceField(choices=[("", "from the file name"), ("jsonl", "jsonl"), ("csv", "csv"),
                                        ("parquet", "parquet")], required=False)
    skip_bad = forms.BooleanField(required=False, label="Skip bad lines",
                                  help_text="Import the good lines and list the bad ones (default: reject the file).")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[("jsonl", "JSONL"), ("parquet", "Parquet")])
    lang = forms.CharField(required=False)
    q = forms.CharField(required=False)
