#if canImport(COpenMP) && os(Linux)
import COpenMP
#endif
import UnCLIPTensor

// `unclip bench ops`: the op timings of `peer_torch.py ops`, under the same names and with the same JSON fields, so
// that Scripts/bench_ops.sh can join the two and print swift/torch ratios measured in one sitting.

/// Times `body` once for warm-up and then `reps` times; prints one JSON line like peer_torch.py's `timeit`.
private func timeOp(_ name: String, reps: Int, threads: Int, gflop: Double? = nil, _ body: () -> Void) {
    body()
    var times: [Double] = []
    let clock = ContinuousClock()
    for _ in 0..<reps {
        let d = clock.measure(body)
        times.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
    times.sort()
    let median = times[times.count / 2]
    var fields = "\"name\": \"\(name)\", \"median_s\": \(median), \"min_s\": \(times[0]), \"max_s\": \(times[times.count - 1]), \"threads\": \(threads)"
    if let gflop { fields += ", \"gflop\": \(gflop), \"gflops\": \(gflop / median)" }
    print("{\(fields)}")
}

/// Runs the op benchmark (GEMM, linear, conv forward and backward, group norm, softmax, attention) with `threads`
/// engine/oneDNN threads and prints one JSON line per op.
func runOpsBenchmark(reps: Int, threads: Int) throws {
    #if canImport(COpenMP) && os(Linux)
    // The engine's parallelFor and oneDNN both size their work by omp_get_max_threads().
    omp_set_num_threads(Int32(threads))
    #endif
    var rng = Philox(seed: 0)
    try withNoGrad {
        for (m, n, k) in [(1024, 1024, 1024), (128, 4096, 1152), (77, 768, 768), (8, 2048, 2048)] {
            let x = Tensor.randn([m, k], using: &rng), y = Tensor.randn([k, n], using: &rng)
            timeOp("gemm_\(m)x\(n)x\(k)", reps: reps, threads: threads, gflop: 2 * Double(m * n * k) / 1e9) { _ = x.matmul(y) }
        }
        for (m, n, k) in [(8, 2048, 2048), (162, 2048, 2048)] {
            let x = Tensor.randn([m, k], using: &rng), w = Tensor.randn([n, k], using: &rng)
            timeOp("linear_\(m)x\(n)x\(k)", reps: reps, threads: threads, gflop: 2 * Double(m * n * k) / 1e9) {
                _ = x.linear(weight: w, bias: nil)
            }
        }
        try checkFinite()
    }
    // conv3x3 128→128 on 2×64×64, padding 1, with a bias (torch.nn.Conv2d's default).
    let convFlop = 2.0 * 2 * 128 * 128 * 9 * 64 * 64 / 1e9
    let x = Tensor.randn([2, 128, 64, 64], using: &rng)
    let w = Tensor.randn([128, 128, 3, 3], using: &rng) * 0.03
    let b = Tensor.randn([128], using: &rng)
    withNoGrad {
        timeOp("conv3x3_2x128x64x64_fwd", reps: reps, threads: threads, gflop: convFlop) {
            _ = x.conv2d(weight: w, bias: b, padding: 1)
        }
    }
    // Forward with recording, then the gradients for input and weight (torch.autograd.grad(conv(x), [x, w], g)).
    x.requiresGrad = true
    w.requiresGrad = true
    let g = withNoGrad { Tensor.randn([2, 128, 64, 64], using: &rng) }
    timeOp("conv3x3_2x128x64x64_fwd_bwd", reps: reps, threads: threads, gflop: 3 * convFlop) {
        x.grad = nil; w.grad = nil
        withGrad { x.conv2d(weight: w, bias: b, padding: 1) }.backward(g)
    }
    x.requiresGrad = false
    w.requiresGrad = false
    withNoGrad {
        let h = Tensor.randn([2, 320, 64, 64], using: &rng)
        let gamma = Tensor.ones([320]), beta = Tensor.zeros([320])
        timeOp("groupnorm_2x320x64x64", reps: reps, threads: threads) {
            _ = h.groupNorm(groups: 32, weight: gamma, bias: beta)
        }
        let s = Tensor.randn([2, 10, 1105, 1105], using: &rng)
        timeOp("softmax_2x10x1105x1105", reps: reps, threads: threads) { _ = s.softmax(axis: -1) }
        let q = Tensor.randn([2, 10, 1105, 64], using: &rng), k = Tensor.randn([2, 10, 1105, 64], using: &rng)
        let v = Tensor.randn([2, 10, 1105, 64], using: &rng)
        let bias = Tensor.zeros([2, 1, 1105, 1105])
        timeOp("attention_2x10x1105x64", reps: reps, threads: threads) {
            _ = scaledDotProductAttention(query: q, key: k, value: v, bias: bias)
        }
    }
}

/// Fails the benchmark if a product came out non-finite (a broken kernel must not report a fast time).
private func checkFinite() throws {
    var rng = Philox(seed: 1)
    let a = Tensor.randn([64, 32], using: &rng), b = Tensor.randn([32, 48], using: &rng)
    let c = a.matmul(b)
    guard c.toArray().allSatisfy({ $0.isFinite }) else { throw BenchOpsError.nonFinite("gemm 64×48×32") }
}

/// A benchmark sanity check that failed.
enum BenchOpsError: Error, CustomStringConvertible {
    case nonFinite(String)
    var description: String {
        switch self { case .nonFinite(let op): return "bench ops: \(op) produced non-finite values" }
    }
}
