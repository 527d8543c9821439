"""`python -m intake` runs the service."""

from intake.config import get_settings
from leadrelay.service import serve

if __name__ == "__main__":
    settings = get_settings()
    # Each worker process imports the factory and builds its own app (INTAKE_WORKERS).
    serve("intake.main:create_app", settings, workers=settings.workers)
