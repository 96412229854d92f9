from django.urls import path

from pulse import views

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
    path("async/", views.async_view, name="async"),
    path("stream/", views.stream, name="stream"),
    path("api/hits/", views.hits, name="hits"),
]
