"""A small JSON API over the guestbook: what an end user's browser or script calls."""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from guestbook.models import Entry


def _entry(entry: Entry) -> dict[str, object]:
    return {
        "id": entry.id,
        "name": entry.name,
        "message": entry.message,
        "created_at": entry.created_at.isoformat(),
    }


@csrf_exempt  # a JSON API for scripts; the admin keeps Django's CSRF protection
@require_http_methods(["GET", "POST"])
def entries(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return JsonResponse([_entry(e) for e in Entry.objects.all()], safe=False)
    try:
        body = json.loads(request.body or b"{}")
        name, message = str(body["name"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"name": ..., "message": ...}'}, status=400)
    return JsonResponse(_entry(Entry.objects.create(name=name, message=message)), status=201)


def health(_request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal = cursor.fetchone()[0]
        cursor.execute("SELECT sqlite_version()")
        version = cursor.fetchone()[0]
    return JsonResponse(
        {"ok": True, "entries": Entry.objects.count(), "journal_mode": journal, "sqlite": version}
    )
