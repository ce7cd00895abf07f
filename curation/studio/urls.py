from django.urls import path

from . import api, views

app_name = "studio"

urlpatterns = [
    path("", views.studio_home, name="home"),
    path("open/", views.studio, name="studio"),
    path("counts/", views.studio_counts, name="counts"),
    path("samples/", views.studio_samples, name="samples"),
    path("recipes/save/", views.recipe_save, name="recipe_save"),
    path("recipes/<int:pk>/", views.recipe_detail, name="recipe"),
    path("versions/<int:pk>/apply/", views.recipe_apply, name="apply"),
    path("selections/<int:pk>/", views.selection_detail, name="selection"),
    path("selections/<int:pk>/export/", views.selection_export, name="export"),
    path("exports/<int:pk>/<str:name>", views.export_file, name="export_file"),
    path("mixtures/new/", views.mixture_new, name="mixture_new"),
    path("mixtures/<int:pk>/", views.mixture_detail, name="mixture"),
    path("mixtures/<int:pk>/<str:name>", views.mixture_file, name="mixture_file"),
    # API (token or session auth, curator role)
    path("api/counts/", api.counts, name="api-counts"),
    path("api/recipes/", api.recipes, name="api-recipes"),
    path("api/recipes/<int:pk>/", api.recipe_detail, name="api-recipe"),
    path("api/recipes/<int:pk>/diff/", api.recipe_diff, name="api-recipe-diff"),
    path("api/versions/<int:pk>/apply/", api.version_apply, name="api-version-apply"),
    path("api/selections/", api.selections, name="api-selections"),
    path("api/selections/<int:pk>/", api.selection_detail, name="api-selection"),
    path("api/selections/<int:pk>/exports/", api.selection_exports, name="api-selection-exports"),
    path("api/mixtures/", api.mixtures, name="api-mixtures"),
    path("api/mixtures/<int:pk>/", api.mixture_detail, name="api-mixture"),
]
