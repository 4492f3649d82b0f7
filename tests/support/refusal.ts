import { isKernelError, type KernelClientError } from '../../clients/src';

/** Awaits a call that must be refused and returns the kernel error it was refused with. */
export async function refusal(call: Promise<unknown>): Promise<KernelClientError> {
  try {
    await call;
  } catch (error) {
    if (isKernelError(error)) return error;
    throw error;
  }
  throw new Error('expected the call to be refused');
}
