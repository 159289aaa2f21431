#!/usr/bin/python3
"""Generates the vibration-anomaly ONNX model: models/vibration-anomaly/1/model.onnx.

The model classifies one window of 128 accelerometer samples from a rotating machine as normal or
faulty. Everything happens inside the graph, so a client sends raw samples:

  window [N,128] --MatMul(cos)--> re [N,64] --+
                 --MatMul(sin)--> im [N,64] --+--> re*re + im*im = power [N,64]
  power --Add(1)--> Log --> Gemm(64->32, standardization folded in) --> Relu
        --> Gemm(32->2) --> Softmax --> scores [N,2] = [p_normal, p_fault]

The DFT is a fixed pair of constant matrices (bins 1..64). The MLP is trained here in numpy with
plain full-batch gradient descent on synthetic windows:

  normal: shaft-frequency sine + 2x/3x harmonics + noise, random amplitude, phase, speed jitter;
  fault:  the same plus a bearing-fault signature, either periodic impulses ringing at a high
          structural resonance (outer/inner race defect) or strong extra shaft harmonics
          (looseness).

Only operators OpenCV 4.6's DNN importer handles are used (MatMul, Gemm, Mul, Add, Log, Relu,
Softmax), opset 13, and every value declares its shape. Everything is seeded, so reruns write
the same bytes.

Usage:
  /usr/bin/python3 tools/gen_vibration_model.py            # train, verify, write the model
  /usr/bin/python3 tools/gen_vibration_model.py --example normal   # KServe v2 request body
  /usr/bin/python3 tools/gen_vibration_model.py --example fault
"""

import argparse
import json
import os
import sys

import numpy as np

WINDOW = 128  # samples per window
BINS = 64  # DFT bins 1..64
HIDDEN = 32
MIN_ACCURACY = 0.95
SEED = 20240611


def shaft_signal(rng, t):
    """A healthy machine: shaft rotation sine plus decaying harmonics and sensor noise."""
    f0 = rng.uniform(3.0, 6.0)  # shaft frequency in cycles per window (speed jitter)
    amp = rng.uniform(0.5, 2.0)
    x = amp * np.sin(2 * np.pi * f0 * t / WINDOW + rng.uniform(0, 2 * np.pi))
    for k, rel in ((2, rng.uniform(0.1, 0.4)), (3, rng.uniform(0.0, 0.2))):
        x += amp * rel * np.sin(2 * np.pi * k * f0 * t / WINDOW + rng.uniform(0, 2 * np.pi))
    x += rng.normal(0.0, rng.uniform(0.05, 0.25) * amp, WINDOW)
    return x, f0, amp


def normal_window(rng):
    t = np.arange(WINDOW)
    x, _, _ = shaft_signal(rng, t)
    return x


def fault_window(rng):
    t = np.arange(WINDOW)
    x, f0, amp = shaft_signal(rng, t)
    if rng.uniform() < 0.6:
        # Bearing defect: an impulse each time a rolling element passes the defect (a
        # non-integer multiple of shaft speed), each ringing at a high structural resonance.
        period = WINDOW / (f0 * rng.uniform(3.0, 5.0))
        resonance = rng.uniform(30.0, 55.0)  # cycles per window
        decay = rng.uniform(2.0, 5.0)  # samples
        strength = amp * rng.uniform(0.8, 1.6)
        start = rng.uniform(0, period)
        for hit in np.arange(start, WINDOW, period):
            dt = t - hit
            mask = dt >= 0
            x[mask] += (strength * np.exp(-dt[mask] / decay) *
                        np.sin(2 * np.pi * resonance * dt[mask] / WINDOW))
    else:
        # Mechanical looseness: strong higher shaft harmonics.
        for k in range(4, 9):
            if k * f0 < BINS - 1:
                x += amp * rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * k * f0 * t / WINDOW +
                                                          rng.uniform(0, 2 * np.pi))
    return x


def dataset(rng, n):
    xs = np.empty((n, WINDOW), np.float64)
    ys = np.empty(n, np.int64)
    for i in range(n):
        ys[i] = i % 2
        xs[i] = fault_window(rng) if ys[i] else normal_window(rng)
    return xs, ys


def dft_matrices():
    t = np.arange(WINDOW)[:, None]
    k = np.arange(1, BINS + 1)[None, :]
    ang = 2 * np.pi * t * k / WINDOW
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def features(xs, cos, sin):
    re = xs @ cos
    im = xs @ sin
    return np.log(re * re + im * im + 1.0)


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(feats, ys, rng, steps=600, lr=0.5):
    """Full-batch gradient descent with momentum on cross-entropy; returns standardized params."""
    mean = feats.mean(axis=0)
    std = feats.std(axis=0) + 1e-6
    z = (feats - mean) / std
    w1 = rng.normal(0, np.sqrt(2.0 / BINS), (BINS, HIDDEN))
    b1 = np.zeros(HIDDEN)
    w2 = rng.normal(0, np.sqrt(1.0 / HIDDEN), (HIDDEN, 2))
    b2 = np.zeros(2)
    onehot = np.eye(2)[ys]
    params = [w1, b1, w2, b2]
    velocity = [np.zeros_like(p) for p in params]
    n = len(ys)
    for _ in range(steps):
        h_pre = z @ w1 + b1
        h = np.maximum(h_pre, 0)
        p = softmax(h @ w2 + b2)
        d_out = (p - onehot) / n
        g_w2 = h.T @ d_out
        g_b2 = d_out.sum(axis=0)
        d_h = (d_out @ w2.T) * (h_pre > 0)
        g_w1 = z.T @ d_h
        g_b1 = d_h.sum(axis=0)
        for i, g in enumerate((g_w1, g_b1, g_w2, g_b2)):
            velocity[i] = 0.9 * velocity[i] - lr * (g + (1e-3 * params[i] if i % 2 == 0 else 0))
            params[i] += velocity[i]
    w1, b1, w2, b2 = params
    # Fold the standardization into the first layer: ((f - mean) / std) @ w1 + b1.
    w1_folded = w1 / std[:, None]
    b1_folded = b1 - (mean / std) @ w1
    return w1_folded, b1_folded, w2, b2


def forward(xs, cos, sin, w1, b1, w2, b2):
    h = np.maximum(features(xs, cos, sin) @ w1 + b1, 0)
    return softmax(h @ w2 + b2)


def build_model(cos, sin, w1, b1, w2, b2):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def value(name, dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"] + dims)

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array, np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["window", "dft_cos"], ["re"], name="dft_re"),
        helper.make_node("MatMul", ["window", "dft_sin"], ["im"], name="dft_im"),
        helper.make_node("Mul", ["re", "re"], ["re2"], name="re_sq"),
        helper.make_node("Mul", ["im", "im"], ["im2"], name="im_sq"),
        helper.make_node("Add", ["re2", "im2"], ["power"], name="power"),
        helper.make_node("Add", ["power", "one"], ["power1"], name="power_plus_one"),
        helper.make_node("Log", ["power1"], ["logpower"], name="log_power"),
        helper.make_node("Gemm", ["logpower", "fc1_w", "fc1_b"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "fc2_w", "fc2_b"], ["logits"], name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
    ]
    initializers = [
        const("dft_cos", cos),
        const("dft_sin", sin),
        const("one", np.ones((1,), np.float32)),
        # Gemm weights are stored [out, in] with transB=1, the layout OpenCV's importer expects.
        const("fc1_w", w1.T),
        const("fc1_b", b1),
        const("fc2_w", w2.T),
        const("fc2_b", b2),
    ]
    graph = helper.make_graph(
        nodes,
        "vibration_anomaly",
        [value("window", [WINDOW])],
        [value("scores", [2])],
        initializer=initializers,
        value_info=[
            value("re", [BINS]),
            value("im", [BINS]),
            value("re2", [BINS]),
            value("im2", [BINS]),
            value("power", [BINS]),
            value("power1", [BINS]),
            value("logpower", [BINS]),
            value("fc1", [HIDDEN]),
            value("hidden", [HIDDEN]),
            value("logits", [2]),
        ],
    )
    model = helper.make_model(graph,
                              producer_name="hivemesh gen_vibration_model.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    model.doc_string = ("Vibration anomaly classifier: window FP32 [N,128] -> scores FP32 [N,2] = "
                        "[p_normal, p_fault]")
    onnx.checker.check_model(model, full_check=True)
    return model


def print_example(kind, seed):
    rng = np.random.default_rng(seed)
    window = fault_window(rng) if kind == "fault" else normal_window(rng)
    body = {
        "inputs": [{
            "name": "window",
            "datatype": "FP32",
            "shape": [1, WINDOW],
            "data": [round(float(v), 4) for v in window],
        }]
    }
    print(json.dumps(body))


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output",
                        default=os.path.join(repo, "models", "vibration-anomaly", "1", "model.onnx"))
    parser.add_argument("--example", choices=["normal", "fault"],
                        help="print one window as a KServe v2 infer request body and exit")
    parser.add_argument("--seed", type=int, default=7, help="seed for --example")
    args = parser.parse_args()

    if args.example:
        print_example(args.example, args.seed)
        return 0

    rng = np.random.default_rng(SEED)
    cos, sin = dft_matrices()
    train_x, train_y = dataset(rng, 8000)
    test_x, test_y = dataset(rng, 2000)
    params = train(features(train_x, cos, sin), train_y, rng)
    params = [np.asarray(p, np.float32) for p in params]

    train_acc = np.mean(forward(train_x, cos, sin, *params).argmax(axis=1) == train_y)
    test_acc = np.mean(forward(test_x, cos, sin, *params).argmax(axis=1) == test_y)
    print(f"train accuracy {train_acc:.4f}, held-out accuracy {test_acc:.4f} "
          f"({len(test_y)} windows)")
    if test_acc < MIN_ACCURACY:
        print(f"error: held-out accuracy {test_acc:.4f} < {MIN_ACCURACY}", file=sys.stderr)
        return 1

    model = build_model(cos, sin, *params)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    data = model.SerializeToString()
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
