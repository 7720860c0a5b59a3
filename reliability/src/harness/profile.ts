/**
 * RELIABILITY_PROFILE=short (what CI runs) or full (the default of
 * `npm run test:reliability`): the same scenarios and assertions, the soak
 * shorter.
 */
export const PROFILE = process.env.RELIABILITY_PROFILE === 'short' ? 'short' : 'full';

export const SOAK_MS = Number(process.env.RELIABILITY_SOAK_MS ?? (PROFILE === 'short' ? 120_000 : 600_000));

/** Overload lasts as long in both profiles: 30 s at ten times the sustainable rate. */
export const OVERLOAD_MS = 30_000;
