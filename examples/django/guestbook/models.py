from django.db import models


class Entry(models.Model):
    """One signature in the guestbook."""

    name = models.CharField(max_length=100)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.name}: {self.message[:40]}"
