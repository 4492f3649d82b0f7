import { SequenceServiceDefinition } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import { expireReservations } from './reservation-expiry';
import { sequenceService } from './sequence-service';

/** Sequence governance (docs/capabilities/sequences.md) as the kernel serves it: the service and the reservation sweep. */
export function sequencesModule(deps: KernelDependencies): CapabilityModule {
  return {
    definition: SequenceServiceDefinition,
    implementation: sequenceService(undefined, deps.prismaReads),
    systemJobs: [
      {
        name: 'kernel.sequences.expire-reservations',
        everySeconds: deps.config.KERNEL_RESERVATION_SWEEP_MS / 1000,
        run: async (job) => void (await expireReservations(job.db, job.log)),
      },
    ],
  };
}
