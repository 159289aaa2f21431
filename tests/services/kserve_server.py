#!/usr/bin/python3
"""A small KServe v2 (Open Inference Protocol) server, written from the protocol, that is not
hivemesh: the KServe v2 workload of the services tests. REST only, JSON tensors.

    kserve_server.py PORT [NAME] [--hostile | --huge-index]

Models:
  doubler  INPUT0 FP32 [-1] -> OUTPUT0 FP32 [-1], each element times two
  counter  TEXT BYTES [-1]  -> LENGTH INT64 [-1], each element's length in bytes
With --hostile it also lists models whose metadata is not JSON (`garbled`), names another model
(`liar`), or whose answers are not JSON (`babbler`, metadata like doubler's); with --huge-index
its repository index is a 2 MiB list. Every answer names the server (NAME, default "kserve-test") and its pid in `parameters`.

Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/<m>, /v2/models/<m>/ready;
POST /v2/repository/index, /v2/models/<m>/infer. Errors are {"error": "..."} with 400 (a bad
request, an empty input
among them) or 404 (no such model).
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = {
    "doubler": {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1]}],
    },
    "counter": {
        "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "LENGTH", "datatype": "INT64", "shape": [-1]}],
    },
}
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
NAME = ARGS[1] if len(ARGS) > 1 else "kserve-test"
HOSTILE = "--hostile" in sys.argv
HUGE_INDEX = "--huge-index" in sys.argv
if HOSTILE:
    MODELS["babbler"] = MODELS["doubler"]


class BadRequest(Exception):
    pass


def flat(data):
    if isinstance(data, list):
        return [x for item in data for x in flat(item)]
    return [data]


def infer(model, body):
    try:
        request = json.loads(body)
    except ValueError as e:
        raise BadRequest(f"the body is not JSON: {e}")
    inputs = {t.get("name"): t for t in request.get("inputs", [])}
    spec = MODELS[model]["inputs"][0]
    tensor = inputs.get(spec["name"])
    if tensor is None:
        raise BadRequest(f"input '{spec['name']}' is missing")
    if tensor.get("datatype") != spec["datatype"]:
        raise BadRequest(f"input '{spec['name']}': datatype must be {spec['datatype']}")
    shape = tensor.get("shape")
    values = flat(tensor.get("data", []))
    if not isinstance(shape, list) or len(shape) != 1 or shape[0] != len(values):
        raise BadRequest(f"input '{spec['name']}': shape {shape} does not hold {len(values)} "
                         "elements")
    if not values:
        raise BadRequest(f"input '{spec['name']}' is empty: nothing to compute")
    if model == "doubler":
        out = [2.0 * float(v) for v in values]
    else:
        out = [len(v.encode()) for v in values]
    output = dict(MODELS[model]["outputs"][0], shape=[len(out)], data=out)
    return {"model_name": model, "model_version": "1", "id": request.get("id", ""),
            "parameters": {"server": NAME, "pid": os.getpid()}, "outputs": [output]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass  # the node logs what matters

    def answer(self, status, obj):
        self.answer_raw(status, json.dumps(obj).encode())

    def answer_raw(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def model_of(self, path, suffix=""):
        name = path[len("/v2/models/"):]
        if suffix:
            name = name[:-len(suffix)]
        return name if name in MODELS else None

    def do_GET(self):
        path = self.path
        if path in ("/v2/health/live", "/v2/health/ready"):
            return self.answer(200, {})
        if path == "/v2":
            return self.answer(200, {"name": NAME, "version": "1",
                                     "extensions": ["model_repository"]})
        if path.startswith("/v2/models/") and path.endswith("/ready"):
            model = self.model_of(path, "/ready")
            return self.answer(200 if model else 404, {} if model else {"error": "no model"})
        if HOSTILE and path == "/v2/models/garbled":
            return self.answer_raw(200, b"{\"name\": \"garbled\", \"inputs\": [")
        if HOSTILE and path == "/v2/models/liar":
            return self.answer(200, {"name": "doubler", **MODELS["doubler"]})
        if path.startswith("/v2/models/"):
            model = self.model_of(path)
            if model is None:
                return self.answer(404, {"error": f"no model {path[len('/v2/models/'):]}"})
            return self.answer(200, {"name": model, "versions": ["1"], "platform": "python",
                                     **MODELS[model]})
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        path = self.path
        if path == "/v2/repository/index":
            if HUGE_INDEX:
                return self.answer(200, [{"name": f"m{i}", "state": "READY"}
                                         for i in range(80_000)])
            extra = ["garbled", "liar"] if HOSTILE else []
            return self.answer(200, [{"name": m, "version": "1", "state": "READY"}
                                     for m in sorted(MODELS) + extra])
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            model = self.model_of(path, "/infer")
            if model is None:
                return self.answer(404, {"error": "no such model"})
            if model == "babbler":
                return self.answer_raw(200, b"<html>not an answer</html>")
            try:
                return self.answer(200, infer(model, body))
            except BadRequest as e:
                return self.answer(400, {"error": str(e)})
        self.answer(404, {"error": "not found"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(ARGS[0])), Handler)
    server.daemon_threads = True
    print(f"KServe v2 test server {NAME} on 127.0.0.1:{ARGS[0]}", flush=True)
    server.serve_forever()
