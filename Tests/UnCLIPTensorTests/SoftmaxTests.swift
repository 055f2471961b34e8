import Foundation
import XCTest
@testable import UnCLIPTensor

final class SoftmaxTests: XCTestCase {
    /// Deterministic pseudo-random values in [offset − scale, offset + scale).
    private func values(_ n: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
        var s = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (0..<n).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return offset + scale * (Float(s >> 40) / Float(1 << 24) * 2 - 1)
        }
    }

    /// Softmax (or log-softmax) in Double over axis `axis` of `shape`.
    private func reference(_ xs: [Float], shape: [Int], axis: Int, log useLog: Bool) -> [Float] {
        let outer = shape[..<axis].reduce(1, *), length = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var out = [Float](repeating: 0, count: xs.count)
        for o in 0..<outer {
            for j in 0..<inner {
                let idx = (0..<length).map { o * length * inner + $0 * inner + j }
                let m = idx.map { Double(xs[$0]) }.max()!
                let s = idx.map { Foundation.exp(Double(xs[$0]) - m) }.reduce(0, +)
                for i in idx {
                    out[i] = useLog ? Float(Double(xs[i]) - m - Foundation.log(s)) : Float(Foundation.exp(Double(xs[i]) - m) / s)
                }
            }
        }
        return out
    }

    // MARK: The vector exponential

    func testFastExpAccuracy() {
        // Relative error against Double exp over the normal range, densely sampled.
        func worstError(from lo: Float, to hi: Float) -> (Double, Float) {
            var worst = 0.0, worstX: Float = 0
            var x = lo
            while x < hi {
                var v = SIMD16<Float>()
                for i in 0..<16 { v[i] = Swift.min(x + Float(i) * 0.000_37, hi) }
                let e = SoftmaxKernels.fastExp(v)
                for i in 0..<16 {
                    let exact = Foundation.exp(Double(v[i]))
                    let rel = Swift.abs(Double(e[i]) - exact) / exact
                    if rel > worst { worst = rel; worstX = v[i] }
                }
                x += 0.0113
            }
            return (worst, worstX)
        }
        let (main, mainX) = worstError(from: -87.33, to: 88.37)
        print("fastExp: worst relative error \(main) at x = \(mainX) on [-87.33, 88.37]")
        XCTAssertLessThan(main, 2.5e-7, "fastExp error \(main) at \(mainX)")  // ≈ 2 ulp
        let (top, topX) = worstError(from: 88.37, to: 88.72)
        XCTAssertLessThan(top, 1.5e-6, "fastExp error \(top) at \(topX)")
        // The variant softmax uses (no overflow handling) agrees bit for bit wherever it is valid.
        for x in stride(from: Float(-90), to: 88.3, by: 0.173) {
            let v = SIMD16<Float>(repeating: x)
            XCTAssertEqual(SoftmaxKernels.fastExpNonPositive(v)[0], SoftmaxKernels.fastExp(v)[0], "e^\(x)")
        }
        // Exact points and both ends.
        var special = SIMD16<Float>(repeating: 0)
        special[1] = 1; special[2] = -.infinity; special[3] = -88; special[4] = -1e30
        special[5] = 88.73; special[6] = .infinity; special[7] = 88.72
        let e = SoftmaxKernels.fastExp(special)
        XCTAssertEqual(e[0], 1)
        XCTAssertEqual(e[1], 2.718_281_8, accuracy: 3e-7)
        for i in 2...4 { XCTAssertEqual(e[i], 0, "lane \(i)") }
        XCTAssertEqual(e[5], .infinity)
        XCTAssertEqual(e[6], .infinity)
        XCTAssertTrue(e[7].isFinite && e[7] > 3.3e38)
    }

    // MARK: Against PyTorch

    func testMatchesPyTorch() throws {
        let cases = try OpsFixtures.load("softmax")
        XCTAssertEqual(cases.count, 5)
        for c in cases {
            let x = Tensor(shape: c.shape, c.x); x.requiresGrad = true
            let y: Tensor = withGrad {
                switch c.op {
                case "softmax": return x.softmax(axis: c.axis!)
                case "log_softmax": return x.logSoftmax(axis: c.axis!)
                default: return x.crossEntropy(targets: c.targets!)
                }
            }
            OpsFixtures.assertClose(y.toArray(), c.y, "\(c.name) output")
            y.backward(Tensor(shape: y.shape, c.gout))
            OpsFixtures.assertClose(x.grad!.toArray(), c.gx, "\(c.name) input gradient")
        }
    }

    // MARK: Stability and larger shapes

    func testLargeAndMaskedValues() {
        // Huge logits overflow a naive exp; −∞ (a mask) must give exactly 0; an all-equal row is uniform.
        let x = Tensor(shape: [3, 4], [1e30, 1e30 - 1e24, -1e30, 0,
                                       5, -.infinity, 5, -.infinity,
                                       7, 7, 7, 7])
        let y = x.softmax().toArray()
        XCTAssertEqual(Array(y[0..<4]), [1, 0, 0, 0])
        XCTAssertEqual(Array(y[4..<8]), [0.5, 0, 0.5, 0])
        XCTAssertEqual(Array(y[8..<12]), [0.25, 0.25, 0.25, 0.25])
        let l = x.logSoftmax().toArray()
        XCTAssertEqual(l[4], -Float(Foundation.log(2.0)), accuracy: 1e-6)
        XCTAssertEqual(l[5], -.infinity)
        XCTAssertEqual(l[9], -Float(Foundation.log(4.0)), accuracy: 1e-6)
    }

    func testLongRowsMatchDoubleReference() {
        // Attention-sized rows (1105), plus lengths around the SIMD widths.
        for length in [1, 15, 16, 17, 33, 1105, 3000] {
            let xs = values(3 * length, seed: UInt64(length), scale: 20)
            let x = Tensor(shape: [3, length], xs)
            OpsFixtures.assertClose(x.softmax().toArray(), reference(xs, shape: [3, length], axis: 1, log: false),
                                    atol: 1e-7, rtol: 2e-6, "softmax [3, \(length)]")
            OpsFixtures.assertClose(x.logSoftmax().toArray(), reference(xs, shape: [3, length], axis: 1, log: true),
                                    atol: 1e-5, rtol: 1e-6, "log-softmax [3, \(length)]")
        }
    }

    func testBackwardOnLongRowsMatchesDoubleReference() {
        // Rows of 1105 take the SIMD paths of the backward kernels (the gradient checks use short rows).
        let length = 1105
        let xs = values(2 * length, seed: 29, scale: 5), gs = values(2 * length, seed: 30)
        let p = reference(xs, shape: [2, length], axis: 1, log: false)
        var expectSoftmax = [Float](), expectLog = [Float]()
        for r in 0..<2 {
            let row = (r * length)..<((r + 1) * length)
            let gy = row.map { Double(gs[$0]) * Double(p[$0]) }.reduce(0, +)
            let gsum = row.map { Double(gs[$0]) }.reduce(0, +)
            for i in row {
                expectSoftmax.append(Float(Double(p[i]) * (Double(gs[i]) - gy)))
                expectLog.append(Float(Double(gs[i]) - Double(p[i]) * gsum))
            }
        }
        for useLog in [false, true] {
            let x = Tensor(shape: [2, length], xs); x.requiresGrad = true
            let y = withGrad { useLog ? x.logSoftmax() : x.softmax() }
            y.backward(Tensor(shape: [2, length], gs))
            OpsFixtures.assertClose(x.grad!.toArray(), useLog ? expectLog : expectSoftmax, atol: 1e-6, rtol: 1e-5,
                                    useLog ? "log-softmax backward" : "softmax backward")
        }
    }

    func testInnerAxisMatchesDoubleReference() {
        // inner = 300 spans more than one 256-lane block, and outer = 2.
        let shape = [2, 7, 300]
        let xs = values(shape.reduce(1, *), seed: 21, scale: 10)
        let x = Tensor(shape: shape, xs)
        OpsFixtures.assertClose(x.softmax(axis: 1).toArray(), reference(xs, shape: shape, axis: 1, log: false),
                                atol: 1e-7, rtol: 2e-6, "softmax axis 1")
        OpsFixtures.assertClose(x.logSoftmax(axis: -2).toArray(), reference(xs, shape: shape, axis: 1, log: true),
                                atol: 1e-5, rtol: 1e-6, "log-softmax axis 1")
        OpsFixtures.assertClose(x.softmax(axis: 0).toArray(), reference(xs, shape: shape, axis: 0, log: false),
                                atol: 1e-7, rtol: 2e-6, "softmax axis 0")
    }

    func testCrossEntropyMatchesDefinition() {
        let xs = values(4 * 9, seed: 22, scale: 4)
        let targets = [0, 8, 3, 3]
        let loss = Tensor(shape: [4, 9], xs).crossEntropy(targets: targets)
        XCTAssertEqual(loss.shape, [])
        let logp = reference(xs, shape: [4, 9], axis: 1, log: true)
        var total: Float = 0
        for (row, t) in targets.enumerated() { total -= logp[row * 9 + t] }
        let expected = total / 4
        XCTAssertEqual(loss.item, expected, accuracy: 1e-6)
    }

    // MARK: Gradient checks

    func testSoftmaxGradientCheck() {
        let rows = gradientCheckError([Tensor(shape: [3, 19], values(57, seed: 23, scale: 2))], delta: 1e-2) { xs in xs[0].softmax() }
        XCTAssertLessThan(rows, 1e-2)
        let inner = gradientCheckError([Tensor(shape: [2, 5, 3], values(30, seed: 24, scale: 2))], delta: 1e-2) { xs in
            xs[0].softmax(axis: 1)
        }
        XCTAssertLessThan(inner, 1e-2)
    }

    func testLogSoftmaxGradientCheck() {
        let rows = gradientCheckError([Tensor(shape: [3, 19], values(57, seed: 25, scale: 2))], delta: 1e-2) { xs in xs[0].logSoftmax() }
        XCTAssertLessThan(rows, 1e-2)
        let inner = gradientCheckError([Tensor(shape: [4, 6], values(24, seed: 26, scale: 2))], delta: 1e-2) { xs in
            xs[0].logSoftmax(axis: 0)
        }
        XCTAssertLessThan(inner, 1e-2)
    }

    func testCrossEntropyGradientCheck() {
        let err = gradientCheckError([Tensor(shape: [5, 7], values(35, seed: 27, scale: 2))], delta: 1e-2) { xs in
            xs[0].crossEntropy(targets: [3, 0, 6, 2, 2])
        }
        XCTAssertLessThan(err, 1e-2)
    }

    // MARK: Speed (opt-in: UNCLIP_BENCH=1)

    func testSoftmaxSpeed() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["UNCLIP_BENCH"] == "1", "set UNCLIP_BENCH=1 to time")
        let x = Tensor(shape: [2, 10, 1105, 1105], values(2 * 10 * 1105 * 1105, seed: 28, scale: 3))
        print("softmax_2x10x1105x1105:", OpsFixtures.timing(reps: 9) { _ = withNoGrad { x.softmax() } })
        x.requiresGrad = true
        let y = withGrad { x.softmax() }
        let rule = try XCTUnwrap(y.gradFn)
        print("softmax_2x10x1105x1105 backward:", OpsFixtures.timing(reps: 5) { _ = withNoGrad { rule.backward(y, y) } })
    }
}
