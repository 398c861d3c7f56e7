"""Just enough Django settings for the example (a real project has its own)."""

SECRET_KEY = "example-only-not-secret"
DEBUG = False
INSTALLED_APPS = ["orders"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
