/**
 * `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics` with messages as raw bytes, for test
 * servers that answer it their own way (UNIMPLEMENTED, or a flood of messages).
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";

const raw = (bytes: Buffer) => bytes;

/** The service, its request and answers left as bytes. */
export const RAW_OPEN_RCA_SERVICE: grpc.ServiceDefinition = {
  StreamCoreMetrics: {
    path: "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics",
    requestStream: false,
    responseStream: true,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};
