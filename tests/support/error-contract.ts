import { Status, type Metadata } from 'nice-grpc';
import { ErrorInfo } from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status';

const ERROR_DOMAIN = 'kernel.axis';
const UPPER_SNAKE = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
/** Codes that mean the kernel did not handle the input: a crash masked (INTERNAL), an escape (UNKNOWN), a hole. */
export const CRASH_CODES = new Set([Status.INTERNAL, Status.UNKNOWN, Status.UNIMPLEMENTED, Status.DATA_LOSS]);

/** What a raw call answered: its status and trailer (and response, when it succeeded). */
export interface Outcome {
  ok: boolean;
  code: Status;
  response?: unknown;
  trailer?: Metadata;
}

/** Contract breaches of one response (docs/laws.md#law-6): the kernel's error model and trace trailer; empty when fine. */
export function errorContractBreaches(outcome: Outcome): string[] {
  const problems: string[] = [];
  const traceId = outcome.trailer?.get('x-trace-id');
  if (!traceId || !TRACE_ID.test(traceId)) problems.push(`x-trace-id trailer is ${JSON.stringify(traceId)}`);
  if (outcome.ok) return problems;
  if (CRASH_CODES.has(outcome.code)) problems.push(`status ${Status[outcome.code]}: the kernel did not handle the input`);
  const raw = outcome.trailer?.get('grpc-status-details-bin');
  if (!raw) return [...problems, 'no grpc-status-details-bin trailer'];
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(raw);
  } catch {
    return [...problems, 'grpc-status-details-bin is not a google.rpc.Status'];
  }
  if (status.code !== outcome.code) problems.push(`google.rpc.Status code ${status.code} differs from the gRPC status ${outcome.code}`);
  const infos = status.details.filter((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo')).map((d) => ErrorInfo.decode(d.value));
  if (infos.length !== 1) return [...problems, `${infos.length} ErrorInfo details (want exactly 1)`];
  const [info] = infos;
  if (info.domain !== ERROR_DOMAIN) problems.push(`ErrorInfo domain ${JSON.stringify(info.domain)}`);
  if (!UPPER_SNAKE.test(info.reason)) problems.push(`ErrorInfo reason ${JSON.stringify(info.reason)} is not UPPER_SNAKE`);
  if (info.metadata.trace_id !== traceId) problems.push(`ErrorInfo trace_id ${info.metadata.trace_id} differs from x-trace-id ${traceId}`);
  return problems;
}

/** The ErrorInfo reason of a refused call, if it carried one. */
export function reasonOf(outcome: Outcome): string | undefined {
  const raw = outcome.trailer?.get('grpc-status-details-bin');
  if (!raw) return undefined;
  const info = RpcStatus.decode(raw).details.find((d) => d.typeUrl.endsWith('/google.rpc.ErrorInfo'));
  return info && ErrorInfo.decode(info.value).reason;
}
