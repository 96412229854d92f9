from django.db import models


class Hit(models.Model):
    """One recorded POST to /api/hits/, tagged with the release that served it."""

    created_at = models.DateTimeField(auto_now_add=True)
    release = models.CharField(max_length=100)
    server = models.CharField(max_length=100)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Hit {self.pk} ({self.release} on {self.server})"
