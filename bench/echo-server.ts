/**
 * The transport baseline of bench/rpc-overhead.ts: a bare @grpc/grpc-js server (no nice-grpc, no
 * middleware, no protobuf) with one unary method `/bench.Echo/Echo` that returns the request
 * bytes as they came (identity Buffer serializers). Listens on 127.0.0.1:0 and prints
 * `ECHO_LISTENING <port>` on stdout; exits on SIGTERM/SIGINT.
 *
 *   node node_modules/tsx/dist/cli.mjs bench/echo-server.ts
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';

const identity = (buffer: Buffer) => buffer;

const server = new Server();
server.register<Buffer, Buffer>(
  '/bench.Echo/Echo',
  (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, call.request),
  identity,
  identity,
  'unary',
);

server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(error);
    process.exit(1);
  }
  process.stdout.write(`ECHO_LISTENING ${port}\n`);
});

const stop = () => server.tryShutdown(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
