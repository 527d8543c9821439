"""`python -m intake` runs the service."""

from intake.config import get_settings
from intake.main import create_app
from leadrelay.service import serve

if __name__ == "__main__":
    serve(create_app(), get_settings())
