"""A Python gRPC client for the hostile-network suite: Debian's python3-grpcio with stubs that
Debian's protoc and grpc_python_plugin generate from proto/grpc_service.proto into a temporary
folder. Importing this module fails (never skips) if any of them is missing.

    from grpc_stubs import grpc, pb, pb_grpc, stub_for
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import grpc  # noqa: F401
except ImportError:
    sys.exit("FAIL: python3-grpcio is not installed (scripts/install-deps.sh installs it)")

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PLUGIN = "/usr/bin/grpc_python_plugin"


def _generate():
    if not os.path.exists(_PLUGIN):
        sys.exit("FAIL: grpc_python_plugin is missing (package protobuf-compiler-grpc)")
    out = tempfile.mkdtemp(prefix="hivemesh-grpc-stubs-")
    atexit.register(shutil.rmtree, out, True)
    proto = os.path.join(_ROOT, "proto")
    subprocess.run(["protoc", "-I", proto, f"--python_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={_PLUGIN}",
                    os.path.join(proto, "grpc_service.proto")], check=True)
    sys.path.insert(0, out)


_generate()
import grpc_service_pb2 as pb  # noqa: E402,F401
import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

# The largest message this client sends or takes (the node's own limit is what is under test).
_OPTIONS = [("grpc.max_send_message_length", 256 << 20),
            ("grpc.max_receive_message_length", 256 << 20)]


def stub_for(port):
    """(channel, stub) for a node's gRPC port."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_OPTIONS)
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)
