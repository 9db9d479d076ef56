"""RapidSMS itself on the echo workload, for the side-by-side benchmark.

BlockingRouter with the echo, default and messagelog contrib apps and the
DatabaseBackend, on sqlite, as a RapidSMS project would configure them.
Prints one line: "rapidsms <messages> messages <seconds> s <per second> msg/s".

    python rapidsms_echo.py [MESSAGES] [DB_PATH]
"""

import os
import sys
import tempfile
import time

import django
from django.conf import settings


def main():
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    db = sys.argv[2] if len(sys.argv) > 2 else os.path.join(tempfile.mkdtemp(), "rapidsms.sqlite3")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rapidsms",
            "rapidsms.backends.database",
            "rapidsms.contrib.messagelog",
            "rapidsms.contrib.handlers",
            "rapidsms.contrib.echo",
            "rapidsms.contrib.default",
        ],
        INSTALLED_BACKENDS={"bench": {"ENGINE": "rapidsms.backends.database.DatabaseBackend"}},
        RAPIDSMS_ROUTER="rapidsms.router.blocking.BlockingRouter",
        RAPIDSMS_HANDLERS=["rapidsms.contrib.echo.handlers.echo.EchoHandler"],
        DEFAULT_RESPONSE="Sorry, %(project_name)s could not understand your message.",
        PROJECT_NAME="RapidSMS",
        LOGGING_CONFIG=None,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from rapidsms.router import lookup_connections, receive

    connection = lookup_connections("bench", ["5551234"])[0]
    for i in range(50):  # warm up
        receive(f"echo warm {i}", connection)
    start = time.perf_counter()
    for i in range(messages):
        receive(f"echo {i}", connection)
    elapsed = time.perf_counter() - start
    from rapidsms.backends.database.models import BackendMessage

    last = BackendMessage.objects.filter(direction="O").order_by("-id").first()
    if last is None or last.text != str(messages - 1):
        sys.exit(f"RapidSMS did not echo: the last reply is {last.text if last else None!r}")
    print(f"rapidsms {messages} messages {elapsed:.3f} s {messages / elapsed:.1f} msg/s")


if __name__ == "__main__":
    main()
