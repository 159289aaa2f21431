#!/usr/bin/python3
"""A gRPC server (Debian's grpcio, HTTP/2 without TLS) with one service, `hivemesh.test.Echo`,
whose messages are raw bytes (no protobuf schema):
- `Upper` (unary): the request in upper case;
- `Count` (server streaming): the request is a decimal n; n messages `0`, `1`, ... `n-1`;
- `Sum` (client streaming): the total length of the messages received, as decimal text.

    grpc_server.py PORT
"""
import sys
import time
from concurrent import futures

import grpc


def upper(request, context):
    return bytes(request).upper()


def count(request, context):
    for i in range(int(bytes(request))):
        yield str(i).encode()


def total(requests, context):
    return str(sum(len(r) for r in requests)).encode()


def main():
    handler = grpc.method_handlers_generic_handler("hivemesh.test.Echo", {
        "Upper": grpc.unary_unary_rpc_method_handler(upper),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    print("serving", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
