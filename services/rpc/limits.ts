/**
 * Limits shared by both ends of the agent stream. Internal to services/rpc.
 *
 * @module
 */

/** Largest message either end sends or accepts by default (bytes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
