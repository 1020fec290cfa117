"""moto's server answering one request at a time.

DynamoDB makes each conditional write atomic: of two `UpdateItem`s
conditioned on the same old value, one fails. moto's own server
(`moto_server`) is threaded and its DynamoDB backend takes no lock, so two
such writes arriving together can both succeed (seen in CI: one approval
used twice). Tests that race agents on one item run moto here instead,
where requests are served in turn, which gives the per-item atomicity
DynamoDB guarantees.

    moto_serial.py -H 127.0.0.1 -p PORT
"""
import argparse

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    a = ap.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        a.host,
        a.port,
        app,
        threaded=False,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
