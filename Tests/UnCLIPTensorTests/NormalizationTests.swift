import Foundation
import XCTest
@testable import UnCLIPTensor

/// One op call recorded by `Scripts/make_op_fixtures_norm.py`.
struct OpsFixtureCase: Decodable {
    let name: String
    let op: String
    let shape: [Int]
    let x: [Float]
    let gout: [Float]
    let y: [Float]
    let gx: [Float]
    let weight: [Float]?
    let bias: [Float]?
    let gw: [Float]?
    let gb: [Float]?
    let eps: Float?
    let groups: Int?
    let axis: Int?
    let targets: [Int]?
    /// A float64 reference output, where PyTorch's float32 kernel itself loses precision.
    let y64: [Float]?
}

/// Loading and comparing the PyTorch fixtures of the normalisation, softmax and resampling tests.
enum OpsFixtures {
    private struct File: Decodable { let cases: [OpsFixtureCase] }

    /// The cases of `Fixtures/<name>.json`.
    static func load(_ name: String) throws -> [OpsFixtureCase] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
                                "missing fixture \(name).json; run Scripts/make_op_fixtures_norm.py")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }

    /// Fails unless |a − b| ≤ atol + rtol·|b| elementwise; reports the worst element.
    static func assertClose(_ a: [Float], _ b: [Float], atol: Float = 1e-5, rtol: Float = 1e-5, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(what): \(a.count) values, expected \(b.count)", file: file, line: line)
        var worst = -1, worstExcess: Float = 0
        for i in 0..<min(a.count, b.count) {
            var excess = abs(a[i] - b[i]) - (atol + rtol * abs(b[i]))
            if excess.isNaN { excess = .infinity }  // a NaN output always fails
            if excess > worstExcess { worst = i; worstExcess = excess }
        }
        if worst >= 0 {
            let i = worst
            XCTFail("\(what): element \(i) is \(a[i]), expected \(b[i]) (atol \(atol), rtol \(rtol))", file: file, line: line)
        }
    }
}

final class NormalizationTests: XCTestCase {
    private func tensor(_ shape: [Int], _ values: [Float], grad: Bool = true) -> Tensor {
        let t = Tensor(shape: shape, values); t.requiresGrad = grad; return t
    }

    /// Deterministic pseudo-random values in [−1, 1) (a small LCG; no RNG dependency).
    private func values(_ n: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
        var s = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (0..<n).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return offset + scale * (Float(s >> 40) / Float(1 << 24) * 2 - 1)
        }
    }

    // MARK: Against PyTorch

    func testLayerNormMatchesPyTorch() throws {
        let cases = try OpsFixtures.load("norm").filter { $0.op == "layer_norm" }
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let x = tensor(c.shape, c.x)
            let d = c.shape.last!
            let w = c.weight.map { tensor([d], $0) }, b = c.bias.map { tensor([d], $0) }
            let y = withGrad { x.layerNorm(weight: w, bias: b, eps: c.eps!) }
            OpsFixtures.assertClose(y.toArray(), c.y, "\(c.name) output")
            y.backward(Tensor(shape: c.shape, c.gout))
            OpsFixtures.assertClose(x.grad!.toArray(), c.gx, atol: 1e-4, rtol: 1e-4, "\(c.name) input gradient")
            if let gw = c.gw { OpsFixtures.assertClose(w!.grad!.toArray(), gw, atol: 1e-4, rtol: 1e-4, "\(c.name) weight gradient") }
            if let gb = c.gb { OpsFixtures.assertClose(b!.grad!.toArray(), gb, atol: 1e-4, rtol: 1e-4, "\(c.name) bias gradient") }
        }
    }

    func testGroupNormMatchesPyTorch() throws {
        let cases = try OpsFixtures.load("norm").filter { $0.op == "group_norm" }
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            let x = tensor(c.shape, c.x)
            let ch = c.shape[1]
            let w = c.weight.map { tensor([ch], $0) }, b = c.bias.map { tensor([ch], $0) }
            let y = withGrad { x.groupNorm(groups: c.groups!, weight: w, bias: b, eps: c.eps!) }
            if let y64 = c.y64 {
                // PyTorch's own float32 result is off by ~1e-4 on this input; the float64 one is the reference.
                OpsFixtures.assertClose(y.toArray(), y64, "\(c.name) output vs float64")
                OpsFixtures.assertClose(y.toArray(), c.y, atol: 3e-4, rtol: 0, "\(c.name) output vs PyTorch float32")
            } else {
                OpsFixtures.assertClose(y.toArray(), c.y, "\(c.name) output")
            }
            y.backward(Tensor(shape: c.shape, c.gout))
            OpsFixtures.assertClose(x.grad!.toArray(), c.gx, atol: 1e-4, rtol: 1e-4, "\(c.name) input gradient")
            if let gw = c.gw { OpsFixtures.assertClose(w!.grad!.toArray(), gw, atol: 1e-4, rtol: 1e-4, "\(c.name) weight gradient") }
            if let gb = c.gb { OpsFixtures.assertClose(b!.grad!.toArray(), gb, atol: 1e-4, rtol: 1e-4, "\(c.name) bias gradient") }
        }
    }

    // MARK: Edge cases and larger shapes

    func testLayerNormZeroRowGivesBias() {
        let x = Tensor.zeros([2, 5])
        let b = Tensor(shape: [5], [0.5, -1, 2, 0, 3])
        let y = x.layerNorm(weight: Tensor.full([5], 2), bias: b)
        XCTAssertEqual(y.toArray(), b.toArray() + b.toArray())
        XCTAssertFalse(y.toArray().contains { !$0.isFinite })
    }

    /// A Double-precision layer norm of a long row with a large offset: the statistics must not lose it.
    func testLayerNormLongRowsMatchDoubleReference() {
        let d = 2_600, rows = 3
        let xs = values(rows * d, seed: 1, scale: 2, offset: 3_000)
        let ws = values(d, seed: 2, scale: 0.5, offset: 1), bs = values(d, seed: 3, scale: 0.5)
        let y = Tensor(shape: [rows, d], xs).layerNorm(weight: Tensor(shape: [d], ws), bias: Tensor(shape: [d], bs))
        var expected = [Float]()
        for r in 0..<rows {
            let row = xs[(r * d)..<((r + 1) * d)].map(Double.init)
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
            for (j, v) in row.enumerated() { expected.append(Float((v - mean) / (variance + 1e-5).squareRoot() * Double(ws[j]) + Double(bs[j]))) }
        }
        // Inputs near 3000 carry Float rounding of ~1e-4 each, ~1e-4 of a unit-variance output.
        OpsFixtures.assertClose(y.toArray(), expected, atol: 2e-4, rtol: 1e-4, "layer norm [3, 2600]")
    }

    /// 64×40×40 spatial positions per channel exercise the SIMD body, the Double flush and a tail.
    func testGroupNormMatchesDoubleReference() {
        let n = 2, c = 12, h = 37, w = 29, groups = 4
        let s = h * w, cg = c / groups
        let xs = values(n * c * s, seed: 4, scale: 3, offset: 40)
        let ws = values(c, seed: 5, scale: 0.5, offset: 1), bs = values(c, seed: 6)
        let y = Tensor(shape: [n, c, h, w], xs).groupNorm(groups: groups, weight: Tensor(shape: [c], ws), bias: Tensor(shape: [c], bs))
        var expected = [Float](repeating: 0, count: xs.count)
        for u in 0..<(n * groups) {
            let block = xs[(u * cg * s)..<((u + 1) * cg * s)].map(Double.init)
            let mean = block.reduce(0, +) / Double(block.count)
            let rstd = 1 / (block.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(block.count) + 1e-5).squareRoot()
            for (k, v) in block.enumerated() {
                let ch = (u % groups) * cg + k / s
                expected[u * cg * s + k] = Float((v - mean) * rstd * Double(ws[ch]) + Double(bs[ch]))
            }
        }
        OpsFixtures.assertClose(y.toArray(), expected, atol: 2e-5, rtol: 1e-5, "group norm [2, 12, 37, 29]")
    }

    func testGroupNormBackwardWithoutInputGradient() {
        // Only the affine parameters need gradients: the kernel skips dx but must still fill dw and db.
        let x = tensor([2, 4, 3, 3], values(72, seed: 7), grad: false)
        let w = tensor([4], values(4, seed: 8, scale: 0.2, offset: 1)), b = tensor([4], values(4, seed: 9))
        let gout = Tensor(shape: [2, 4, 3, 3], values(72, seed: 10))
        withGrad { x.groupNorm(groups: 2, weight: w, bias: b) }.backward(gout)
        XCTAssertNil(x.grad)
        // db = Σ over samples and positions of g; dw = Σ g · x̂.
        let xhat = x.groupNorm(groups: 2, weight: nil, bias: nil)
        for ch in 0..<4 {
            var gb: Float = 0, gw: Float = 0
            for s in 0..<2 { for k in 0..<9 { let i = (s * 4 + ch) * 9 + k; gb += gout.data[i]; gw += gout.data[i] * xhat.data[i] } }
            XCTAssertEqual(b.grad!.data[ch], gb, accuracy: 1e-5)
            XCTAssertEqual(w.grad!.data[ch], gw, accuracy: 1e-5)
        }
    }

    func testLayerNormBackwardSplitsRowsConsistently() {
        // [48, 768] is large enough for per-thread partial weight gradients; its two halves are not. The
        // parameter gradients of the whole must equal the sums over the halves, and the input gradients match.
        let d = 768
        let xs = values(48 * d, seed: 31, scale: 2, offset: 0.5), gs = values(48 * d, seed: 32)
        func grads(_ rows: Range<Int>) -> ([Float], [Float], [Float]) {
            let x = tensor([rows.count, d], Array(xs[(rows.lowerBound * d)..<(rows.upperBound * d)]))
            let w = tensor([d], values(d, seed: 33, scale: 0.3, offset: 1)), b = tensor([d], values(d, seed: 34))
            withGrad { x.layerNorm(weight: w, bias: b) }
                .backward(Tensor(shape: [rows.count, d], Array(gs[(rows.lowerBound * d)..<(rows.upperBound * d)])))
            return (x.grad!.toArray(), w.grad!.toArray(), b.grad!.toArray())
        }
        let whole = grads(0..<48), top = grads(0..<24), bottom = grads(24..<48)
        OpsFixtures.assertClose(whole.0, top.0 + bottom.0, atol: 1e-6, rtol: 1e-6, "input gradient")
        OpsFixtures.assertClose(whole.1, zip(top.1, bottom.1).map(+), atol: 1e-5, rtol: 1e-5, "weight gradient")
        OpsFixtures.assertClose(whole.2, zip(top.2, bottom.2).map(+), atol: 1e-5, rtol: 1e-5, "bias gradient")
    }

    func testOutputShapes() {
        XCTAssertEqual(Tensor.zeros([2, 6, 5, 7]).groupNorm(groups: 3, weight: nil, bias: nil).shape, [2, 6, 5, 7])
        XCTAssertEqual(Tensor.zeros([4, 3, 8]).layerNorm(weight: nil, bias: nil).shape, [4, 3, 8])
    }

    // MARK: Gradient checks

    func testLayerNormGradientCheck() {
        let x = Tensor(shape: [3, 21], values(63, seed: 11, scale: 2))
        let w = Tensor(shape: [21], values(21, seed: 12, scale: 0.3, offset: 1)), b = Tensor(shape: [21], values(21, seed: 13))
        let err = gradientCheckError([x, w, b], delta: 1e-2) { xs in xs[0].layerNorm(weight: xs[1], bias: xs[2]) }
        XCTAssertLessThan(err, 1e-2)
        let plain = gradientCheckError([Tensor(shape: [2, 3, 5], values(30, seed: 14, scale: 2))], delta: 1e-2) { xs in
            xs[0].layerNorm(weight: nil, bias: nil)
        }
        XCTAssertLessThan(plain, 1e-2)
    }

    func testGroupNormGradientCheck() {
        let x = Tensor(shape: [2, 6, 5, 7], values(420, seed: 15, scale: 2))
        let w = Tensor(shape: [6], values(6, seed: 16, scale: 0.3, offset: 1)), b = Tensor(shape: [6], values(6, seed: 17))
        let err = gradientCheckError([x, w, b], delta: 1e-2, maxElements: 140) { xs in
            xs[0].groupNorm(groups: 3, weight: xs[1], bias: xs[2])
        }
        XCTAssertLessThan(err, 1e-2)
        let flat = gradientCheckError([Tensor(shape: [3, 8], values(24, seed: 18, scale: 2))], delta: 1e-2) { xs in
            xs[0].groupNorm(groups: 4, weight: nil, bias: nil)
        }
        XCTAssertLessThan(flat, 1e-2)
    }

    // MARK: Speed (opt-in: UNCLIP_BENCH=1)

    func testGroupNormSpeed() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["UNCLIP_BENCH"] == "1", "set UNCLIP_BENCH=1 to time")
        let x = Tensor(shape: [2, 320, 64, 64], values(2 * 320 * 4096, seed: 19))
        let w = Tensor.ones([320]), b = Tensor.zeros([320])
        print("groupnorm_2x320x64x64:", OpsFixtures.timing { _ = withNoGrad { x.groupNorm(groups: 32, weight: w, bias: b) } })
        x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
        let g = Tensor.ones([2, 320, 64, 64])
        let y = withGrad { x.groupNorm(groups: 32, weight: w, bias: b) }
        let rule = try XCTUnwrap(y.gradFn)
        print("groupnorm_2x320x64x64 backward:", OpsFixtures.timing { _ = withNoGrad { rule.backward(g, y) } })
        let ln = Tensor(shape: [1232, 768], values(1232 * 768, seed: 20))
        let lw = Tensor.ones([768]), lb = Tensor.zeros([768])
        print("layernorm_1232x768:", OpsFixtures.timing { _ = withNoGrad { ln.layerNorm(weight: lw, bias: lb) } })
    }
}

extension OpsFixtures {
    /// "median … ms, min … ms" of `body` over `reps` runs after one warm-up.
    static func timing(reps: Int = 15, _ body: () -> Void) -> String {
        body()
        var times = [Double]()
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        times.sort()
        return String(format: "median %.2f ms, min %.2f ms over %d runs", times[reps / 2], times[0], reps)
    }
}
