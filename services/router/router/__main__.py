"""`python -m router` runs the service."""

from leadrelay.service import serve
from router.config import get_settings
from router.main import create_app

if __name__ == "__main__":
    serve(create_app(), get_settings())
