/**
 * The gRPC adapter for the agent <-> broker stream (`proto/monitoring.proto`):
 * the broker's server (on `@grpc/grpc-js`) and everything of agent_mod.ts
 * (the agent's client, on `node:http2`, and the message types). Only this
 * folder imports `@grpc/grpc-js` and `@grpc/proto-loader`; the agent imports
 * agent_mod.ts, which loads neither.
 *
 * @module
 */
export * from "./agent_mod.ts";
export type { ServerTlsOptions } from "./tls.ts";
export {
  type RpcServer,
  type RpcServerOptions,
  type ServerStream,
  startRpcServer,
} from "./server.ts";
