"""Imported first in each worker process (``[app] modules`` in faktory.toml): set Django up before any app
module touches models or settings, exactly as ``manage.py`` and ``wsgi.py`` do for the web process."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

try:
    import django
except ImportError:  # the example also runs where Django is not installed
    django = None

if django is not None:
    django.setup()
