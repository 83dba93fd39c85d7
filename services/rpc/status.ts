/**
 * gRPC status codes used by the product, so services can name them without
 * importing the gRPC library.
 *
 * @module
 */

/** The subset of gRPC status codes the product uses (values as in gRPC). */
export const RpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** One of the values of {@linkcode RpcStatus}. */
export type RpcStatusCode = typeof RpcStatus[keyof typeof RpcStatus];

/** Name of a status code, e.g. `UNAVAILABLE`. */
export function statusName(code: number): string {
  for (const [name, value] of Object.entries(RpcStatus)) if (value === code) return name;
  return `code ${code}`;
}

/** An error carrying a gRPC status. */
export class RpcError extends Error {
  /**
   * @param code gRPC status code
   * @param details the peer's message
   */
  constructor(readonly code: number, readonly details: string) {
    super(`${statusName(code)}: ${details}`);
    this.name = "RpcError";
  }
}
