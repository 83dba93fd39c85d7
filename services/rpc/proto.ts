/**
 * Loads `proto/monitoring.proto` for the gRPC adapter. Internal to services/rpc.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { PROTO_FILE } from "./permissions.ts";

/** Absolute path of the protocol file. */
export const PROTO_PATH: string = PROTO_FILE;

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  oneofs: true,
};

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated `monitoring.v1.Monitoring` service constructor (loaded once). */
export function monitoringService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    monitoring: { v1: { Monitoring: grpc.ServiceClientConstructor } };
  };
  cached = loaded.monitoring.v1.Monitoring;
  return cached;
}

export { stripOneof } from "./oneof.ts";
