"""A plain wasi:http proxy component in Python, built with componentize-py.

`GET /hello` answers `<name>@<version>`: the name and version the base installed this
component as. Build: `componentize-py -d wit -w hello componentize app -o python-hello.wasm`.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import environment
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def who() -> str:
    # Asked of the host on every request: os.environ was fixed when the interpreter was
    # pre-initialised at build time, and each instance the base makes has its own variables.
    env = dict(environment.get_environment())
    name = env.get("KOUPLELESS_MODULE_NAME", "?")
    version = env.get("KOUPLELESS_MODULE_VERSION", "?")
    return f"{name}@{version}"


def respond(out: ResponseOutparam, status: int, text: str) -> None:
    headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(out, Ok(response))
    stream = body.write()
    stream.blocking_write_and_flush(text.encode("utf-8"))
    # The stream is a child of the body: it must be gone before the body is finished.
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        if isinstance(request.method(), Method_Get) and path == "/hello":
            respond(response_out, 200, who())
        else:
            respond(response_out, 404, "not found\n")
