#!/bin/sh
# The app's command under the agent: migrations first (against the database the agent just
# downloaded), then the server. `exec` so the agent's SIGTERM reaches gunicorn itself.
set -e
cd "$(dirname "$0")"
python manage.py migrate --noinput
exec gunicorn mysite.wsgi --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-2}" \
    --access-logfile - --graceful-timeout 5
