"""`python -m leadrelay.devbroker`: run the embedded broker in the foreground for `make run`."""

import os

from leadrelay.broker import broker_command

if __name__ == "__main__":
    port = int(os.environ.get("EMBEDDED_BROKER_PORT", "9092"))
    command = broker_command(port)
    os.environ.setdefault("RUST_LOG", "warn")
    # exec, so the process runner's SIGTERM reaches the broker itself
    os.execv(command[0], command)
