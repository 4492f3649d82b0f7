import * as fc from 'fast-check';

/**
 * Mutation testing only (stryker*.config.mjs add this as a jest setup file): every property runs
 * on the same generated values for every mutant and every run, so a mutant's verdict and the
 * reported score do not depend on luck. Ordinary test runs keep fast-check's random seeds.
 */
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20261203) });
