"""`python -m scoring` runs the service."""

from leadrelay.service import serve
from scoring.config import get_settings
from scoring.main import create_app

if __name__ == "__main__":
    serve(create_app(), get_settings())
