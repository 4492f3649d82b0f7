import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import {
  Any,
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  QuotaFailure,
  RetryInfo,
} from 'nice-grpc-error-details';
import { KERNEL_ERROR_DOMAIN, type KernelClientErrorInit } from './kernel-client-error';

/** The rich-error fields of a {@link KernelClientError}, as decoded from `grpc-status-details-bin`. */
export type StatusDetails = Pick<
  KernelClientErrorInit,
  'reason' | 'metadata' | 'retryDelayMs' | 'fieldViolations' | 'quotaViolations' | 'preconditionViolations'
>;

/** `google.rpc.Status.details` is field 3, a repeated `google.protobuf.Any`. */
const STATUS_DETAILS_FIELD = 3;

/**
 * Decodes the kernel's rich error model from the `grpc-status-details-bin` trailer.
 *
 * The google.rpc.Status envelope is read here rather than through nice-grpc-error-details'
 * client middleware because that middleware decodes inside grpc-js' status event, where a
 * malformed trailer would throw out of an event handler; here a bad trailer just means "no
 * details". Only the ErrorInfo of the kernel's own domain is trusted for `reason`/`metadata`:
 * a proxy or another service must not be able to impersonate a kernel reason.
 */
export function decodeStatusDetails(bytes: Uint8Array | undefined): StatusDetails {
  const result: StatusDetails = {};
  if (!bytes || bytes.length === 0) return result;
  let anys: Any[];
  try {
    anys = readStatusDetails(bytes);
  } catch {
    return result;
  }
  for (const any of anys) {
    try {
      applyDetail(result, any);
    } catch {
      // One undecodable detail must not hide the others.
    }
  }
  return result;
}

function readStatusDetails(bytes: Uint8Array): Any[] {
  const reader = new BinaryReader(bytes);
  const details: Any[] = [];
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === STATUS_DETAILS_FIELD && wireType === WireType.LengthDelimited) {
      details.push(Any.decode(reader.bytes()));
    } else {
      reader.skip(wireType, fieldNo);
    }
  }
  return details;
}

function applyDetail(result: StatusDetails, any: Any): void {
  const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  switch (typeName) {
    case ErrorInfo.$type: {
      const info = ErrorInfo.decode(any.value);
      // The kernel sends exactly one ErrorInfo; keep the first of our domain if there were more.
      if (info.domain === KERNEL_ERROR_DOMAIN && result.reason === undefined) {
        result.reason = info.reason;
        result.metadata = { ...info.metadata };
      }
      return;
    }
    case RetryInfo.$type: {
      const delay = RetryInfo.decode(any.value).retryDelay;
      result.retryDelayMs = delay ? Math.max(0, Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6)) : 0;
      return;
    }
    case BadRequest.$type:
      result.fieldViolations = BadRequest.decode(any.value).fieldViolations.map(({ field, description }) => ({ field, description }));
      return;
    case QuotaFailure.$type:
      result.quotaViolations = QuotaFailure.decode(any.value).violations.map(({ subject, description }) => ({ subject, description }));
      return;
    case PreconditionFailure.$type:
      result.preconditionViolations = PreconditionFailure.decode(any.value).violations.map(({ type, subject, description }) => ({
        type,
        subject,
        description,
      }));
      return;
    default:
      // Help, LocalizedMessage, DebugInfo, ... carry nothing a caller should branch on.
      return;
  }
}
