import { Metadata as GrpcMetadata, Server as GrpcServer, ServerCredentials, type ChannelOptions, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition as GrpcServiceDefinition } from '@grpc/grpc-js';
import type { CompatServiceDefinition, MethodDefinition } from 'nice-grpc';
import type { CallContext, Metadata, MetadataValue, MethodDescriptor, ServerMiddleware } from 'nice-grpc-common';
import type { CancelSignal } from './cancel-signal';
import type { MiddlewareChain } from './middleware/typed-chain';

/*
 * nice-grpc's own per-kind call handlers and definition conversion, for what the kernel's edge
 * does not handle itself (streaming methods, the health and reflection services). They are
 * internal modules of nice-grpc (no exports map; the version is pinned by package-lock.json and
 * their shapes are checked below at load), so they are required here with the types they have.
 */
type NiceHandlerFactory = (definition: MethodDefinition<unknown, unknown, unknown, unknown>, implementation: (...args: never[]) => unknown, middleware?: ServerMiddleware) => unknown;
/* eslint-disable @typescript-eslint/no-require-imports */
const nice = {
  unary: (require('nice-grpc/lib/server/handleUnaryCall') as { createUnaryMethodHandler: NiceHandlerFactory }).createUnaryMethodHandler,
  serverStreaming: (require('nice-grpc/lib/server/handleServerStreamingCall') as { createServerStreamingMethodHandler: NiceHandlerFactory }).createServerStreamingMethodHandler,
  clientStreaming: (require('nice-grpc/lib/server/handleClientStreamingCall') as { createClientStreamingMethodHandler: NiceHandlerFactory }).createClientStreamingMethodHandler,
  bidiStreaming: (require('nice-grpc/lib/server/handleBidiStreamingCall') as { createBidiStreamingMethodHandler: NiceHandlerFactory }).createBidiStreamingMethodHandler,
  errorStatus: (require('nice-grpc/lib/server/createErrorStatusObject') as { createErrorStatusObject(path: string, error: unknown, trailer: GrpcMetadata): object }).createErrorStatusObject,
  definitions: require('nice-grpc/lib/service-definitions') as {
    normalizeServiceDefinition(definition: CompatServiceDefinition): Record<string, MethodDefinition<unknown, unknown, unknown, unknown>>;
    toGrpcJsServiceDefinition(definition: Record<string, MethodDefinition<unknown, unknown, unknown, unknown>>): GrpcServiceDefinition;
  },
};
/* eslint-enable @typescript-eslint/no-require-imports */
const { definitions, ...handlerFactories } = nice;
for (const [name, value] of Object.entries({ ...handlerFactories, ...definitions })) {
  if (typeof value !== 'function') throw new Error(`nice-grpc's internal ${name} is not a function: its version changed under the kernel's server edge`);
}

type Implementation = Record<string, (...args: never[]) => unknown>;

/**
 * The kernel's gRPC server: a grpc-js server whose unary methods behind the kernel's middleware
 * chain are called by the kernel's own edge — the request goes from grpc-js through the chain's
 * list into the handler as plain promises, with one call context object, the incoming metadata
 * read where grpc-js keeps it (no copy), and cancellation read from grpc-js's call (an
 * AbortSignal is made only when something asks for `signal`). nice-grpc's server would wrap each
 * such call in two async generators, a metadata copy, an AbortController and three listeners:
 * together a measurable share of a call's CPU at the kernel's rates. Everything else (streaming methods, services without the chain) is
 * served by nice-grpc's own handlers, exactly as its server does.
 */
export class KernelServer {
  private readonly server: GrpcServer;
  private listening = false;

  constructor(options: ChannelOptions) {
    this.server = new GrpcServer(options);
  }

  /** A service behind `chain` (when given) — every kernel capability — or without it (health, reflection). */
  add(definition: CompatServiceDefinition, implementation: object, chain?: MiddlewareChain<any>): void {
    if (this.listening) throw new Error('KernelServer.add() must be called before listen()');
    const methods = nice.definitions.normalizeServiceDefinition(definition);
    const middleware = chain?.build() as ServerMiddleware | undefined;
    const handlers: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(methods)) {
      const own = (implementation as Implementation)[name];
      if (typeof own !== 'function') throw new Error(`${method.path} has no implementation`);
      const handler = own.bind(implementation) as (request: unknown, context: CallContext) => Promise<unknown>;
      if (chain && !method.requestStream && !method.responseStream) handlers[name] = unaryBehindChain(method.path, chain.unary(descriptor(method), handler));
      else if (!method.requestStream) handlers[name] = (method.responseStream ? nice.serverStreaming : nice.unary)(method, handler, middleware);
      else handlers[name] = (method.responseStream ? nice.bidiStreaming : nice.clientStreaming)(method, handler, middleware);
    }
    this.server.addService(nice.definitions.toGrpcJsServiceDefinition(methods), handlers as never);
  }

  /** Binds `address` (host:port; port 0 picks one) without TLS; resolves with the port. */
  listen(address: string): Promise<number> {
    this.listening = true;
    return new Promise((resolve, reject) =>
      this.server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
  }

  /** Stops accepting calls and resolves once the calls in flight have ended. */
  shutdown(): Promise<void> {
    return new Promise((resolve, reject) => this.server.tryShutdown((error) => (error ? reject(error) : resolve())));
  }

  /** Ends every call in flight now (CANCELLED) and closes the connections. */
  forceShutdown(): void {
    this.server.forceShutdown();
  }
}

function descriptor(method: MethodDefinition<unknown, unknown, unknown, unknown>): MethodDescriptor {
  return { path: method.path, requestStream: method.requestStream, responseStream: method.responseStream, options: method.options };
}

/** grpc-js's unary handler for `run` (the chain in front of the method's implementation). */
function unaryBehindChain(path: string, run: (request: unknown, context: CallContext) => Promise<unknown>) {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): void => {
    const context = new EdgeCallContext(call);
    let answer: Promise<unknown>;
    try {
      answer = run(call.request, context);
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer.then(
      (response) => {
        context.settle();
        if (response == null) callback(nice.errorStatus(path, new Error(`${path} returned no message`), context.trailers) as never);
        else callback(null, response, context.trailers);
      },
      (error: unknown) => {
        context.settle();
        callback(nice.errorStatus(path, error, context.trailers) as never);
      },
    );
  };
}

/**
 * A unary call's context as nice-grpc defines it (metadata, peer, header, trailer, signal), made
 * for the kernel's edge: the metadata views read and write grpc-js's own Metadata, `peer` is
 * looked up when read, and the AbortController (with its `cancelled` listener) exists only once
 * something reads `signal` — a cached read never does.
 */
class EdgeCallContext implements CallContext {
  readonly metadata: Metadata;
  readonly trailer: Metadata;
  /** What the trailer view writes: the status's metadata. */
  readonly trailers = new GrpcMetadata();
  private headers?: GrpcMetadata;
  private controller?: AbortController;
  private settled = false;
  private headerSent = false;

  constructor(private readonly call: ServerUnaryCall<unknown, unknown>) {
    this.metadata = new GrpcMetadataView(call.metadata);
    this.trailer = new GrpcMetadataView(this.trailers);
  }

  get peer(): string {
    return this.call.getPeer();
  }

  get header(): Metadata {
    return new GrpcMetadataView((this.headers ??= new GrpcMetadata()));
  }

  /** The light cancellation the kernel's machinery uses (cancel-signal.ts): no AbortSignal made. */
  get cancelSignal(): CancelSignal {
    return new CallCancelSignal(this.call);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      if (this.call.cancelled) controller.abort();
      else if (!this.settled) this.call.once('cancelled', () => this.settled || controller.abort());
    }
    return this.controller.signal;
  }

  sendHeader(): void {
    if (this.headerSent) return;
    this.headerSent = true;
    if (this.headers && Object.keys(this.headers.getMap()).length > 0) this.call.sendMetadata(this.headers);
  }

  /** The handler has answered: a later cancellation no longer aborts it; headers go out if set. */
  settle(): void {
    this.settled = true;
    this.sendHeader();
  }
}

/**
 * A unary call's cancellation read from grpc-js's call: `cancelled` is its flag, and listeners
 * wait for its 'cancelled' event (once). It reports a cancellation whenever it comes, even after
 * the call answered — its listeners are the commit group's, which remove themselves first.
 */
class CallCancelSignal implements CancelSignal {
  constructor(private readonly call: ServerUnaryCall<unknown, unknown>) {}

  get aborted(): boolean {
    return this.call.cancelled;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    this.call.once('cancelled', listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.call.removeListener('cancelled', listener);
  }
}

/**
 * nice-grpc's Metadata interface over a grpc-js Metadata, with nice-grpc's semantics: keys are
 * case-insensitive, `-bin` keys hold bytes, and several values of a text key read as one,
 * joined with ", " (as HTTP joins repeated fields).
 */
export class GrpcMetadataView implements Metadata {
  constructor(private readonly source: GrpcMetadata) {}

  set<Key extends string>(key: Key, value: MetadataValue<Key> | Array<MetadataValue<Key>>): Metadata {
    const name = key.toLowerCase();
    const values = textJoined(name, checked(name, Array.isArray(value) ? value : [value]));
    const previous = this.source.get(name);
    this.source.remove(name);
    try {
      for (const item of values) this.source.add(name, asGrpcValue(item));
    } catch (refused) {
      // A value grpc-js refuses leaves the key as it was.
      this.source.remove(name);
      for (const item of previous) this.source.add(name, item);
      throw refused;
    }
    return this;
  }

  append<Key extends string>(key: Key, value: MetadataValue<Key>): Metadata {
    const name = key.toLowerCase();
    if (name.endsWith('-bin')) this.source.add(name, asGrpcValue(checked(name, [value])[0]));
    else this.set(name, [...this.values(name), value]);
    return this;
  }

  delete(key: string): void {
    this.source.remove(key.toLowerCase());
  }

  get<Key extends string>(key: Key): MetadataValue<Key> | undefined {
    return this.getAll(key)[0];
  }

  getAll<Key extends string>(key: Key): Array<MetadataValue<Key>> {
    return this.values(key.toLowerCase()) as Array<MetadataValue<Key>>;
  }

  has(key: string): boolean {
    return this.source.get(key.toLowerCase()).length > 0;
  }

  *[Symbol.iterator](): IterableIterator<[string, Value[]]> {
    for (const key of Object.keys(this.source.getMap())) yield [key, this.values(key)];
  }

  private values(name: string): Value[] {
    const values = this.source.get(name);
    return values.length > 1 ? textJoined(name, values) : values;
  }
}

type Value = string | Uint8Array;

/** nice-grpc's rule, checked before values are joined: bytes under `-bin` keys, text under the others. */
function checked(key: string, values: Value[]): Value[] {
  for (const value of values) {
    if (key.endsWith('-bin') !== value instanceof Uint8Array) throw new Error(`Metadata key '${key}' takes ${key.endsWith('-bin') ? 'binary' : 'text'} values`);
  }
  return values;
}

function textJoined(key: string, values: Value[]): Value[] {
  return key.endsWith('-bin') || values.length < 2 ? values : [values.join(', ')];
}

function asGrpcValue(value: Value): string | Buffer {
  return typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
