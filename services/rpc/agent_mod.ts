/**
 * The agent's entry point to the adapter for the agent <-> broker stream:
 * the client (a small gRPC client on this folder's HTTP/2 layer over
 * `Deno.connect`, client.ts and h2_client.ts), the message
 * types, status codes and TLS options. It never loads `@grpc/grpc-js`
 * (mod.ts adds the broker's server, which does), so the agent's module
 * graph holds no gRPC library.
 *
 * @module
 */
export type * from "./messages.ts";
export { RpcError, RpcStatus, type RpcStatusCode, statusName } from "./status.ts";
export type { ClientTlsOptions } from "./tls.ts";
export { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";
export {
  type AgentStream,
  type AgentStreamOptions,
  KEEPALIVE_TIMEOUT_MS,
  openAgentStream,
} from "./client.ts";
