/**
 * The gRPC adapter for the agent <-> broker stream (`proto/monitoring.proto`).
 * Only this folder imports `@grpc/grpc-js` and `@grpc/proto-loader`.
 *
 * @module
 */
export type * from "./messages.ts";
export { RpcError, RpcStatus, type RpcStatusCode, statusName } from "./status.ts";
export type { ClientTlsOptions, ServerTlsOptions } from "./tls.ts";
export {
  DEFAULT_MAX_MESSAGE_BYTES,
  type RpcServer,
  type RpcServerOptions,
  type ServerStream,
  startRpcServer,
} from "./server.ts";
export { type AgentStream, type AgentStreamOptions, openAgentStream } from "./client.ts";
