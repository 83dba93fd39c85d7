/**
 * The gRPC adapter for the agent <-> broker stream (`proto/monitoring.proto`):
 * the broker's server (server.ts, on this folder's own HTTP/2 server, h2.ts)
 * and everything of agent_mod.ts (the agent's client, on this folder's
 * client side of HTTP/2, h2_client.ts, over `Deno.connect`; and the message
 * types); both on one frame codec (h2_frames.ts) and HPACK (hpack.ts). Neither loads a gRPC library: `@grpc/grpc-js` and
 * `@grpc/proto-loader` are imported only by this folder's tests (proto.ts,
 * as the reference client and schema they check against). The broker
 * imports server_mod.ts (no client); the agent
 * agent_mod.ts (no server).
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
