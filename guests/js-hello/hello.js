// A plain wasi:http proxy component in JavaScript, built with componentize-js.
//
// `GET /hello` answers `<name>@<version>`: the name and version the base installed this
// component as. Build: `componentize-js --wit wit --world-name hello -o js-hello.wasm hello.js`.
//
// The component implements wasi:http/incoming-handler itself rather than with a `fetch`
// event listener: componentize-js exports the engine's listener only at the wasi:http version
// its engine was built with, while this world, like the Python guest's, is the WIT that the
// base's wasmtime links.

import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const dispose = Symbol.dispose || Symbol.for('dispose');
const utf8 = new TextEncoder();

// Asked of the host on every request: the engine was pre-initialised at build time, and each
// instance the base makes has its own variables.
function who() {
  const env = new Map(getEnvironment());
  const name = env.get('KOUPLELESS_MODULE_NAME') ?? '?';
  const version = env.get('KOUPLELESS_MODULE_VERSION') ?? '?';
  return `${name}@${version}`;
}

function respond(responseOut, status, text) {
  const headers = Fields.fromList([
    ['content-type', utf8.encode('text/plain; charset=utf-8')],
  ]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
  const stream = body.write();
  stream.blockingWriteAndFlush(utf8.encode(text));
  // The stream is a child of the body: it must be gone before the body is finished.
  stream[dispose]();
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    const path = (request.pathWithQuery() ?? '/').split('?', 1)[0];
    if (request.method().tag === 'get' && path === '/hello') {
      respond(responseOut, 200, who());
    } else {
      respond(responseOut, 404, 'not found\n');
    }
  },
};
