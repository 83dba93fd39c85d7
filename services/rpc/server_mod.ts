/**
 * The broker's entry point to the adapter for the agent <-> broker stream:
 * the server (server.ts, on this folder's own HTTP/2 layer), the message
 * types, status codes and TLS options. It never loads the agent's client
 * (client.ts, on `node:http2`) nor a gRPC library, so the broker's module
 * graph holds neither (checked by server_test.ts).
 *
 * @module
 */
export type * from "./messages.ts";
export { RpcError, RpcStatus, type RpcStatusCode, statusName } from "./status.ts";
export type { ServerTlsOptions } from "./tls.ts";
export { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";
export {
  DEFAULT_MAX_STREAMS_PER_CONNECTION,
  type RpcServer,
  type RpcServerOptions,
  SERVER_KEEPALIVE_MS,
  SERVER_KEEPALIVE_TIMEOUT_MS,
  type ServerStream,
  startRpcServer,
} from "./server.ts";
