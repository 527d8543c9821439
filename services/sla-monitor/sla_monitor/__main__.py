"""`python -m sla_monitor` runs the service."""

from leadrelay.service import serve
from sla_monitor.config import get_settings
from sla_monitor.main import create_app

if __name__ == "__main__":
    serve(create_app(), get_settings())
