#!/usr/bin/env python3
"""Call semroute's Route RPC with nothing but server reflection (no .proto files, no generated code).

  pip install grpcio grpcio-reflection protobuf
  python3 scripts/route_call.py 127.0.0.1:50051 "write a python function that reverses a list"
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    text = sys.argv[2] if len(sys.argv) > 2 else "hello there"
    channel = grpc.insecure_channel(addr)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindMethodByName("semroute.v1.Router.Route")
    request_cls = GetMessageClass(method.input_type)
    response_cls = GetMessageClass(method.output_type)
    call = channel.unary_unary(
        "/semroute.v1.Router/Route",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    response = call(request_cls(text=text, top_k=3), timeout=10)
    print(json.dumps(json_format.MessageToDict(response), indent=2))


if __name__ == "__main__":
    main()
