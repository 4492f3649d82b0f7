import type { MethodDescriptor } from 'nice-grpc-common';

/** Encodes and decodes one protobuf message type (the shape ts-proto generates). */
export interface MessageCodec<T = unknown> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial?(object: unknown): T;
}

/** What the platform needs to know about an RPC to govern it. */
export interface KernelMethod {
  /** `/axis.kernel.sequences.v1.SequenceService/IssueNumber` */
  readonly path: string;
  /** `axis.kernel.sequences.v1.SequenceService/IssueNumber`: the audit action name. */
  readonly action: string;
  /** `axis.kernel.sequences.v1.SequenceService` (rpc.service of the call's span). */
  readonly service: string;
  /** `IssueNumber` (rpc.method of the call's span). */
  readonly name: string;
  /** Declared `idempotency_level = NO_SIDE_EFFECTS`: no idempotency key, read-only transaction. */
  readonly readOnly: boolean;
  /**
   * A read-only method whose every call is still audited (e.g. accessing a secret value): it
   * needs no idempotency key and its response is never stored, but it runs in a read-write
   * transaction with the group committer and answers only once its audit entry is durable.
   */
  readonly auditedRead: boolean;
  /** `sequences:read` or `sequences:write` unless the service overrides it. */
  readonly requiredScope: string;
  readonly requestType: MessageCodec;
  readonly responseType: MessageCodec;
}

interface GeneratedServiceDefinition {
  readonly fullName: string;
  readonly methods: Record<
    string,
    {
      readonly name: string;
      readonly requestType: unknown;
      readonly responseType: unknown;
      readonly options: { idempotencyLevel?: string };
    }
  >;
}

/** Method metadata of every governed service, looked up by path in the middleware. */
export class MethodRegistry {
  private readonly methods = new Map<string, KernelMethod>();

  /**
   * Registers a ts-proto generated service definition. The capability is the proto package's
   * segment after `axis.kernel.`; scopes default to `<capability>:read|write`.
   */
  register(definition: GeneratedServiceDefinition, scopeOverrides: Record<string, string> = {}, auditedReads: readonly string[] = []): void {
    const capability = /^axis\.kernel\.([a-z0-9_]+)\.v\d+\./.exec(definition.fullName)?.[1];
    if (!capability) throw new Error(`not a kernel service: ${definition.fullName}`);
    for (const method of Object.values(definition.methods)) {
      const readOnly = method.options.idempotencyLevel === 'NO_SIDE_EFFECTS';
      const auditedRead = auditedReads.includes(method.name);
      if (auditedRead && !readOnly) throw new Error(`${definition.fullName}/${method.name}: an audited read must be declared NO_SIDE_EFFECTS`);
      const action = `${definition.fullName}/${method.name}`;
      this.methods.set(`/${action}`, {
        path: `/${action}`,
        action,
        service: definition.fullName,
        name: method.name,
        readOnly,
        auditedRead,
        requiredScope: scopeOverrides[method.name] ?? `${capability}:${readOnly ? 'read' : 'write'}`,
        requestType: method.requestType as MessageCodec,
        responseType: method.responseType as MessageCodec,
      });
    }
  }

  get(descriptor: MethodDescriptor): KernelMethod {
    const method = this.methods.get(descriptor.path);
    if (!method) throw new Error(`method ${descriptor.path} is served but not registered with the kernel`);
    return method;
  }

  all(): KernelMethod[] {
    return [...this.methods.values()];
  }
}
