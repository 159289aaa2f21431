#!/usr/bin/python3
"""The KServe v2 gRPC API (inference.GRPCInferenceService) against real `hivemesh agent` processes.

A Python client on Debian's python3-grpcio, with stubs generated from proto/grpc_service.proto by
Debian's protoc and grpc_python_plugin into the build directory, calls every RPC on one node and
checks the values; then a second node joins and a ModelInfer sent to the node that does not host
the model is served by the other, exactly as a REST request would be.

Usage: grpc_test.py <hivemesh binary> <build dir>. Fails (never skips) if grpcio is missing.
"""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

try:
    import grpc
except ImportError:
    sys.exit("FAIL: python3-grpcio is not installed (scripts/install-deps.sh installs it)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent_node  # noqa: E402
from agent_node import AgentNode  # noqa: E402


def generate_stubs(build_dir):
    out = os.path.join(build_dir, "grpc_test_stubs")
    os.makedirs(out, exist_ok=True)
    plugin = "/usr/bin/grpc_python_plugin"
    if not os.path.exists(plugin):
        sys.exit("FAIL: grpc_python_plugin is missing (package protobuf-compiler-grpc)")
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), f"--python_out={out}",
                    f"--grpc_python_out={out}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    os.path.join(ROOT, "proto", "grpc_service.proto")], check=True)
    sys.path.insert(0, out)


class Node(AgentNode):
    """A node of the shipped repository loading `models`, with a gRPC stub when gRPC is on."""

    def __init__(self, binary, name, models, extra=(), grpc_on=True):
        super().__init__(binary, name, ["--model-repository", os.path.join(ROOT, "models"),
                                        "--models", models, *extra], grpc=grpc_on)
        self.channel = None
        if grpc_on:
            self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
            self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def mapped(self, fragment):
        with open(f"/proc/{self.proc.pid}/maps") as f:
            return fragment in f.read()

    def rest(self, path, body=None):
        status, text = self.request("GET" if body is None else "POST", path,
                                    None if body is None else json.dumps(body))
        if status != 200:
            raise AssertionError(f"{path}: HTTP {status}: {text}")
        return text

    def stop(self):
        if self.channel is not None:
            self.channel.close()
        super().stop()


def wait_for(fn, seconds, what):
    return agent_node.wait_for(fn, seconds, what, retry_on=(grpc.RpcError,))


failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def expect_error(fn, code, substring, what):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code and substring in e.details(),
              f"{what}: {code.name} naming '{substring}' (got {e.code().name}: {e.details()})")
        return
    check(False, f"{what}: expected {code.name}, the call succeeded")


def fp32_input(name, shape, values):
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=shape)
    t.contents.fp32_contents.extend(values)
    return t


def served_by(response):
    p = response.parameters.get("served_by")
    return p.string_param if p is not None else ""


def example_window(kind):
    out = subprocess.run([PYTHON, os.path.join(ROOT, "tools", "gen_vibration_model.py"),
                          "--example", kind], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def single_node(node):
    s = node.stub
    check(s.ServerLive(pb.ServerLiveRequest()).live, "ServerLive: live")
    check(s.ServerReady(pb.ServerReadyRequest()).ready, "ServerReady: ready")
    check(s.ModelReady(pb.ModelReadyRequest(name="identity")).ready, "ModelReady: identity ready")
    check(s.ModelReady(pb.ModelReadyRequest(name="identity", version="1")).ready,
          "ModelReady: identity version 1 ready")
    expect_error(lambda: s.ModelReady(pb.ModelReadyRequest(name="nope")),
                 grpc.StatusCode.NOT_FOUND, "nope", "ModelReady: unknown model")

    meta = s.ServerMetadata(pb.ServerMetadataRequest())
    check(meta.name == "hivemesh" and meta.version != "", f"ServerMetadata: {meta.name} {meta.version}")
    check(list(meta.extensions) == ["binary_tensor_data", "statistics", "model_repository"],
          f"ServerMetadata: extensions {list(meta.extensions)}")

    m = s.ModelMetadata(pb.ModelMetadataRequest(name="vibration-anomaly"))
    check(m.name == "vibration-anomaly" and list(m.versions) == ["1"] and
          m.platform == "onnx_onnxv1", f"ModelMetadata: {m.name} {list(m.versions)} {m.platform}")
    check([(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("window", "FP32", [-1, 128])],
          "ModelMetadata: input window FP32 [-1,128]")
    check([(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [("scores", "FP32", [-1, 2])],
          "ModelMetadata: output scores FP32 [-1,2]")
    expect_error(lambda: s.ModelMetadata(pb.ModelMetadataRequest(name="identity", version="7")),
                 grpc.StatusCode.NOT_FOUND, "7", "ModelMetadata: unknown version")

    # Identity, typed contents in and out.
    req = pb.ModelInferRequest(model_name="identity", id="typed-1",
                               inputs=[fp32_input("INPUT0", [4], [1, 2, 3, 4])])
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r, call = s.ModelInfer.with_call(
        req, metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),))
    out = r.outputs[0] if r.outputs else None
    check(out is not None and out.name == "OUTPUT0" and out.datatype == "FP32" and
          list(out.shape) == [4] and list(out.contents.fp32_contents) == [1, 2, 3, 4] and
          len(r.raw_output_contents) == 0, "ModelInfer typed: identity round trip [1,2,3,4]")
    check(r.id == "typed-1" and r.model_name == "identity" and r.model_version == "1",
          f"ModelInfer typed: id, model and version echoed ({r.id} {r.model_name} {r.model_version})")
    trailing = dict(call.trailing_metadata())
    check(served_by(r) == node.name and trailing.get("hivemesh-served-by") == node.name,
          f"ModelInfer typed: served by {node.name} (parameter and trailing metadata)")
    check(trailing.get("hivemesh-trace") == trace_id,
          f"ModelInfer typed: the traceparent's trace id comes back ({trailing.get('hivemesh-trace')})")

    # Identity, raw contents in and out.
    values = [0.5, -1.25, 3.0, 1e6, -7.5]
    req = pb.ModelInferRequest(model_name="identity", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[5])])
    req.raw_input_contents.append(struct.pack("<5f", *values))
    r = s.ModelInfer(req)
    check(len(r.raw_output_contents) == 1 and
          list(struct.unpack("<5f", r.raw_output_contents[0])) == values and
          list(r.outputs[0].shape) == [5] and not r.outputs[0].HasField("contents"),
          "ModelInfer raw: identity round trip through raw_output_contents")

    # The vibration model: the same scores as REST, and the right class for each window.
    for kind, cls in (("normal", 0), ("fault", 1)):
        body = example_window(kind)
        window = body["inputs"][0]
        r = s.ModelInfer(pb.ModelInferRequest(model_name="vibration-anomaly", inputs=[
            fp32_input("window", window["shape"], window["data"])]))
        scores = list(r.outputs[0].contents.fp32_contents)
        rest = json.loads(node.rest("/v2/models/vibration-anomaly/infer", body))
        rest_scores = rest["outputs"][0]["data"]
        check(r.outputs[0].name == "scores" and list(r.outputs[0].shape) == [1, 2] and
              len(scores) == 2 and scores[cls] > 0.5,
              f"ModelInfer vibration-anomaly: {kind} window scores {scores}")
        check(all(abs(a - b) < 1e-5 for a, b in zip(scores, rest_scores)),
              f"ModelInfer vibration-anomaly: {kind} scores equal REST's {rest_scores}")

    # Bad input.
    both = pb.ModelInferRequest(model_name="identity",
                                inputs=[fp32_input("INPUT0", [2], [1, 2])])
    both.raw_input_contents.append(struct.pack("<2f", 1, 2))
    expect_error(lambda: s.ModelInfer(both), grpc.StatusCode.INVALID_ARGUMENT, "both",
                 "ModelInfer: raw and typed contents for one tensor")
    short = pb.ModelInferRequest(model_name="identity", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[4])])
    short.raw_input_contents.append(struct.pack("<3f", 1, 2, 3))
    expect_error(lambda: s.ModelInfer(short), grpc.StatusCode.INVALID_ARGUMENT, "INPUT0",
                 "ModelInfer: raw size disagrees with the shape")
    count = pb.ModelInferRequest(model_name="identity",
                                 inputs=[fp32_input("INPUT0", [4], [1, 2, 3])])
    expect_error(lambda: s.ModelInfer(count), grpc.StatusCode.INVALID_ARGUMENT, "needs 4 elements",
                 "ModelInfer: typed element count disagrees with the shape")
    half = pb.ModelInferRequest(model_name="identity", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP16", shape=[1])])
    half.inputs[0].contents.fp32_contents.append(1)
    expect_error(lambda: s.ModelInfer(half), grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents",
                 "ModelInfer: FP16 sent typed")
    expect_error(lambda: s.ModelInfer(pb.ModelInferRequest(
        model_name="no-such-model", inputs=[fp32_input("INPUT0", [1], [1])])),
        grpc.StatusCode.NOT_FOUND, "no-such-model", "ModelInfer: unknown model")
    expect_error(lambda: s.ModelInfer(pb.ModelInferRequest(
        model_name="identity", model_version="9", inputs=[fp32_input("INPUT0", [1], [1])])),
        grpc.StatusCode.NOT_FOUND, "9", "ModelInfer: unknown version")
    big = pb.ModelInferRequest(model_name="identity", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[400000])])
    big.raw_input_contents.append(bytes(1600000))  # over the node's 1 MiB limit
    expect_error(lambda: s.ModelInfer(big), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max",
                 "ModelInfer: message over grpc_max_message_bytes")

    # Statistics count what ran: 2 identity inferences succeeded above.
    st = s.ModelStatistics(pb.ModelStatisticsRequest(name="identity"))
    ident = st.model_stats[0] if st.model_stats else None
    check(ident is not None and ident.name == "identity" and ident.version == "1" and
          ident.inference_count == 2 and ident.inference_stats.success.count == 2 and
          ident.last_inference > 0,
          f"ModelStatistics: identity counted 2 inferences ({ident and ident.inference_count})")
    check(ident is not None and [b.batch_size for b in ident.batch_stats] == [1] and
          ident.batch_stats[0].compute_infer.count == ident.execution_count,
          "ModelStatistics: batch_stats, one execution of batch size 1 per inference")
    every = s.ModelStatistics(pb.ModelStatisticsRequest())
    check(sorted(m.name for m in every.model_stats) == ["identity", "vibration-anomaly"],
          "ModelStatistics: every model")
    expect_error(lambda: s.ModelStatistics(pb.ModelStatisticsRequest(name="nope")),
                 grpc.StatusCode.NOT_FOUND, "nope", "ModelStatistics: unknown model")

    idx = s.RepositoryIndex(pb.RepositoryIndexRequest())
    check(sorted((m.name, m.version, m.state) for m in idx.models) ==
          [("identity", "1", "READY"), ("vibration-anomaly", "1", "READY")],
          f"RepositoryIndex: {[(m.name, m.version, m.state) for m in idx.models]}")

    # Streaming: three requests, one bad; every answer comes back, the bad one as error_message.
    stream_reqs = [
        pb.ModelInferRequest(model_name="identity", id="s1",
                             inputs=[fp32_input("INPUT0", [2], [5, 6])]),
        pb.ModelInferRequest(model_name="identity", id="s2",
                             inputs=[fp32_input("INPUT0", [3], [1, 2])]),
        pb.ModelInferRequest(model_name="identity", id="s3",
                             inputs=[fp32_input("INPUT0", [1], [9])]),
    ]
    answers = list(s.ModelStreamInfer(iter(stream_reqs)))
    good = {a.infer_response.id: list(a.infer_response.outputs[0].contents.fp32_contents)
            for a in answers if not a.error_message}
    errors = [a.error_message for a in answers if a.error_message]
    check(len(answers) == 3 and good == {"s1": [5, 6], "s3": [9]} and len(errors) == 1 and
          "needs 3 elements" in errors[0],
          f"ModelStreamInfer: 2 answers and 1 error ({good}, {errors})")

    # The node runs with model_control_mode: explicit.
    s.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="identity"))
    expect_error(lambda: s.ModelReady(pb.ModelReadyRequest(name="identity")),
                 grpc.StatusCode.NOT_FOUND, "unloaded", "RepositoryModelUnload: identity is gone")
    idx = s.RepositoryIndex(pb.RepositoryIndexRequest())
    check([(m.version, m.state, m.reason) for m in idx.models if m.name == "identity"] ==
          [("", "UNAVAILABLE", "unloaded")],
          f"RepositoryModelUnload: the index says unloaded ({idx.models})")
    expect_error(lambda: s.RepositoryModelUnload(
        pb.RepositoryModelUnloadRequest(model_name="identity")),
        grpc.StatusCode.NOT_FOUND, "not loaded", "RepositoryModelUnload: twice")
    s.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="identity"))
    check(s.ModelReady(pb.ModelReadyRequest(name="identity")).ready,
          "RepositoryModelLoad: identity serves again")
    r = s.ModelInfer(pb.ModelInferRequest(model_name="identity",
                                          inputs=[fp32_input("INPUT0", [1], [4])]))
    check(list(r.outputs[0].contents.fp32_contents) == [4], "RepositoryModelLoad: and infers")
    expect_error(lambda: s.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="nope")),
                 grpc.StatusCode.NOT_FOUND, "'nope' is not in the model repository",
                 "RepositoryModelLoad: unknown model")
    expect_error(lambda: s.RepositoryModelLoad(pb.RepositoryModelLoadRequest(
        model_name="identity", parameters={"config": pb.ModelRepositoryParameter(
            string_param="{}")})),
        grpc.StatusCode.INVALID_ARGUMENT, "parameter 'config' is not supported",
        "RepositoryModelLoad: parameters")
    expect_error(lambda: s.RepositoryModelLoad(pb.RepositoryModelLoadRequest()),
                 grpc.StatusCode.INVALID_ARGUMENT, "model_name is required",
                 "RepositoryModelLoad: no name")


def two_nodes(binary, a):
    """`b` hosts identity only; `a` (vibration-anomaly only) must offload identity to `b`."""
    b = Node(binary, "grpc-b", "identity", ["--join", a.gossip])
    try:
        req = pb.ModelInferRequest(model_name="identity", id="via-a",
                                   inputs=[fp32_input("INPUT0", [3], [7, 8, 9])])

        def offloaded():
            try:
                return a.stub.ModelInfer.with_call(req, timeout=5)
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    return None  # gossip has not told `a` about `b` yet
                raise
        r, call = wait_for(offloaded, 30, "node grpc-a to learn that grpc-b hosts identity")
        check(list(r.outputs[0].contents.fp32_contents) == [7, 8, 9] and r.id == "via-a",
              "two nodes: ModelInfer on grpc-a answered [7,8,9]")
        check(served_by(r) == "grpc-b" and dict(call.trailing_metadata()).get(
            "hivemesh-served-by") == "grpc-b",
              f"two nodes: served by grpc-b (parameter '{served_by(r)}')")
        metrics = a.rest("/metrics")
        check(re.search(r'hivemesh_inference_requests_total\{model="identity",route="offloaded",'
                        r'outcome="success"\} [1-9]', metrics) is not None,
              "two nodes: grpc-a counted the request as offloaded, like REST")
    finally:
        b.stop()


def drain_with_an_open_stream(binary):
    """SIGTERM with an idle ModelStreamInfer stream open: the node still exits 0, promptly."""
    import threading
    node = Node(binary, "grpc-drain", "identity", ["--drain-announce-ms", "100"])
    release = threading.Event()

    def requests():
        yield pb.ModelInferRequest(model_name="identity", id="d1",
                                   inputs=[fp32_input("INPUT0", [1], [3])])
        release.wait(60)

    call = node.stub.ModelStreamInfer(requests())
    try:
        first = next(call)
        check(list(first.infer_response.outputs[0].contents.fp32_contents) == [3],
              "drain: the open stream answered its first request")
        start = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = node.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - start
        check(code == 0 and took < 10,
              f"drain: exit {code} after {took:.1f} s with an idle stream open (cancelled)")
    finally:
        release.set()
        call.cancel()
        node.stop()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: grpc_test.py <hivemesh binary> <build dir>")
    binary, build_dir = sys.argv[1], sys.argv[2]
    generate_stubs(build_dir)
    bad = subprocess.run([binary, "agent", "--grpc-address", "nonsense"], capture_output=True,
                         text=True, timeout=30)
    check(bad.returncode == 2 and "grpc_address: 'nonsense' is not host:port" in bad.stdout + bad.stderr,
          "a bad grpc_address is refused by name")
    global pb, pb_grpc
    import grpc_service_pb2 as pb
    import grpc_service_pb2_grpc as pb_grpc
    plain = Node(binary, "plain", "identity", grpc_on=False)
    try:
        check(not plain.mapped("libgrpc") and not plain.mapped("libhivemesh_grpc"),
              "a node without grpc_address maps neither the gRPC plugin nor libgrpc++")
    finally:
        plain.stop()
    a = Node(binary, "grpc-a", "identity,vibration-anomaly",
             ["--grpc-max-message-bytes", "1048576", "--model-control-mode", "explicit"])
    try:
        check(a.mapped("libhivemesh_grpc.so"), "a node with grpc_address loads the gRPC plugin")
        single_node(a)
    finally:
        a.stop()
    a = Node(binary, "grpc-a", "vibration-anomaly")
    try:
        expect_error(lambda: a.stub.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="identity")),
            grpc.StatusCode.FAILED_PRECONDITION, "model_control_mode: explicit",
            "RepositoryModelLoad: refused unless the node runs in explicit mode")
        two_nodes(binary, a)
    finally:
        a.stop()
    drain_with_an_open_stream(binary)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed: {failures}")
    print("grpc_test: all checks passed")


if __name__ == "__main__":
    main()
