// A tiny gRPC service definition (JSON messages) shared by the grpc examples.
import { Buffer } from 'node:buffer';
const json = { serialize: (v) => Buffer.from(JSON.stringify(v)), deserialize: (b) => JSON.parse(b.toString()) };

export const greeterService = {
  hello: {
    path: '/demo.Greeter/Hello',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};
