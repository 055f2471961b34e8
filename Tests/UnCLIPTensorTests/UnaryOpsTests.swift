import XCTest
import Foundation
@testable import UnCLIPTensor

/// The largest error of `approx` against `reference` in units of the float spacing at the true value.
private func ulpError(_ approx: (SIMD16<Float>) -> SIMD16<Float>, _ reference: (Double) -> Double,
                      from lo: Float, to hi: Float, samples: Int = 1 << 20) -> Double {
    var worst = 0.0
    var i = 0
    while i < samples {
        var v = SIMD16<Float>()
        for k in 0..<16 { v[k] = lo + (hi - lo) * Float(i + k) / Float(samples) }
        let y = approx(v)
        for k in 0..<16 {
            let ref = reference(Double(v[k]))
            let spacing = Double(Float(ref).ulp)
            guard spacing > 0, spacing.isFinite else { continue }
            worst = max(worst, abs(Double(y[k]) - ref) / spacing)
        }
        i += 16
    }
    return worst
}

private func tensor(_ shape: [Int], from lo: Float, to hi: Float) -> Tensor {
    let n = shape.reduce(1, *)
    // A fixed scrambled walk through [lo, hi] so neighbouring elements differ.
    return Tensor(shape: shape, (0..<n).map { i in lo + (hi - lo) * Float((i * 7919) % max(n, 1)) / Float(max(n - 1, 1)) })
}

private func assertClose(_ t: Tensor, _ reference: [Double], rel: Double = 2e-6, abs absTol: Double = 1e-7,
                         _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(t.count, reference.count, message, file: file, line: line)
    for (y, r) in zip(t.toArray(), reference) {
        let err = Swift.abs(Double(y) - r)
        if !(err <= absTol + rel * Swift.abs(r)) {
            XCTFail("\(message): got \(y), expected \(r)", file: file, line: line)
            return
        }
    }
}

final class UnaryOpsTests: XCTestCase {
    // MARK: Accuracy of the vector math against Double

    func testVectorMathAccuracy() {
        // Measured on this implementation (no FMA): exp 0.97, log 0.67 (0.81 on [0.5, 2]), tanh 1.22, erf 1.13,
        // sigmoid 2.48 ulp (sigmoid adds the rounding of 1 + e⁻ˣ and of the division to exp's error).
        let exp = ulpError(VectorMath.exp, Foundation.exp, from: -87, to: 88)
        let log = ulpError(VectorMath.log, Foundation.log, from: 1e-30, to: 1e4)
        let logNearOne = ulpError(VectorMath.log, Foundation.log, from: 0.5, to: 2)
        let tanh = ulpError(VectorMath.tanh, Foundation.tanh, from: -10, to: 10)
        let erf = ulpError(VectorMath.erf, Foundation.erf, from: -5, to: 5)
        let sigmoid = ulpError(VectorMath.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }, from: -30, to: 30)
        print(String(format: "max ulp error: exp %.2f log %.2f (near 1: %.2f) tanh %.2f erf %.2f sigmoid %.2f",
                     exp, log, logNearOne, tanh, erf, sigmoid))
        XCTAssertLessThanOrEqual(exp, 2)
        XCTAssertLessThanOrEqual(log, 2)
        XCTAssertLessThanOrEqual(logNearOne, 2)
        XCTAssertLessThanOrEqual(tanh, 3)
        XCTAssertLessThanOrEqual(erf, 3)
        XCTAssertLessThanOrEqual(sigmoid, 3)
    }

    func testVectorMathSpecialValues() {
        let x = SIMD16<Float>(-200, -104.5, 100, .infinity, -.infinity, .nan, 0, -0.0, 1, 1e-40, 88.7, -87.5, 1e-45, 2, 3, 4)
        let e = VectorMath.exp(x)
        XCTAssertEqual(e[0], 0); XCTAssertEqual(e[1], 0)
        XCTAssertEqual(e[2], .infinity); XCTAssertEqual(e[3], .infinity); XCTAssertEqual(e[4], 0)
        XCTAssertTrue(e[5].isNaN)
        XCTAssertEqual(e[6], 1); XCTAssertEqual(e[8], Float(M_E), accuracy: 1e-6)
        XCTAssertEqual(Double(e[11]), Foundation.exp(-87.5), accuracy: 1e-41)  // subnormal result
        let l = VectorMath.log(x)
        XCTAssertTrue(l[0].isNaN); XCTAssertEqual(l[3], .infinity); XCTAssertTrue(l[5].isNaN)
        XCTAssertEqual(l[6], -.infinity); XCTAssertEqual(l[7], -.infinity); XCTAssertEqual(l[8], 0)
        XCTAssertEqual(Double(l[9]), Foundation.log(Double(Float(1e-40))), accuracy: 1e-5)  // subnormal input
        XCTAssertEqual(Double(l[12]), Foundation.log(Double(Float(1e-45))), accuracy: 1e-5)
        let t = VectorMath.tanh(x)
        XCTAssertEqual(t[0], -1); XCTAssertEqual(t[2], 1); XCTAssertEqual(t[3], 1); XCTAssertEqual(t[4], -1)
        XCTAssertTrue(t[5].isNaN); XCTAssertEqual(t[6], 0); XCTAssertEqual(t[9], 1e-40)
        let f = VectorMath.erf(x)
        XCTAssertEqual(f[0], -1); XCTAssertEqual(f[3], 1); XCTAssertEqual(f[6], 0)
        let s = VectorMath.sigmoid(x)
        XCTAssertEqual(s[0], 0); XCTAssertEqual(s[2], 1); XCTAssertEqual(s[6], 0.5)
    }

    // MARK: Forward values against independent Double references

    func testForwardValues() {
        let x = tensor([5, 37], from: -6, to: 6)  // 185 elements: exercises a partial final block
        let xs = x.toArray().map(Double.init)
        withNoGrad {
            assertClose(x.exp(), xs.map { Foundation.exp($0) }, "exp")
            assertClose(x.tanh(), xs.map { Foundation.tanh($0) }, rel: 4e-7, abs: 1e-7, "tanh")
            assertClose(x.sigmoid(), xs.map { 1 / (1 + Foundation.exp(-$0)) }, "sigmoid")
            assertClose(x.silu(), xs.map { $0 / (1 + Foundation.exp(-$0)) }, "silu")
            assertClose(x.quickGELU(), xs.map { $0 / (1 + Foundation.exp(-1.702 * $0)) }, "quickGELU")
            // Matches PyTorch F.gelu: x·½(1 + erf(x/√2)); computed as 1 + erf in float, so allow absolute error.
            assertClose(x.gelu(), xs.map { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, abs: 2e-6, "gelu")
            assertClose(x.gelu(approximate: .tanh),
                        xs.map { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) },
                        abs: 2e-6, "gelu tanh")
            assertClose(x.relu(), xs.map { Swift.max($0, 0) }, rel: 0, abs: 0, "relu")
            assertClose(x.abs(), xs.map { Swift.abs($0) }, rel: 0, abs: 0, "abs")
            assertClose(x.clamped(min: -1.5, max: 2), xs.map { Swift.min(Swift.max($0, -1.5), 2) }, rel: 0, abs: 0, "clamp")

            let p = tensor([3, 41], from: 0.01, to: 9)
            let ps = p.toArray().map(Double.init)
            assertClose(p.log(), ps.map { Foundation.log($0) }, abs: 2e-7, "log")
            assertClose(p.sqrt(), ps.map { $0.squareRoot() }, rel: 1e-7, abs: 0, "sqrt")
            assertClose(p.rsqrt(), ps.map { 1 / $0.squareRoot() }, rel: 2e-7, abs: 0, "rsqrt")
            for e: Float in [2, 3, 0.5, -1, 1.7, -2.5] {
                assertClose(p.pow(e), ps.map { Foundation.pow($0, Double(e)) }, rel: 1e-6, abs: 0, "pow \(e)")
            }
        }
    }

    func testEdgeCases() {
        withNoGrad {
            // 0-d tensors and empty tensors.
            XCTAssertEqual(Tensor(scalar: 0).exp().item, 1)
            XCTAssertEqual(Tensor(scalar: 0).exp().shape, [])
            XCTAssertEqual(Tensor.zeros([0, 3]).tanh().shape, [0, 3])
            // Extremes.
            let x = Tensor(shape: [6], [-1000, -90, 0, 90, 1000, .nan])
            // σ(−90) ≈ 8e-40 is subnormal: flushed to 0 here (e⁹⁰ overflows Float), below 1e-38 either way.
            let s = x.sigmoid().toArray()
            XCTAssertEqual(s[0], 0); XCTAssertEqual(s[1], 0, accuracy: 1e-38); XCTAssertEqual(Array(s[2..<5]), [0.5, 1, 1])
            XCTAssertEqual(x.tanh().toArray().prefix(5), [-1, -1, 0, 1, 1])
            let silu = x.silu().toArray()
            XCTAssertEqual(silu[1], 0, accuracy: 1e-36); XCTAssertEqual(Array(silu[2..<5]), [0, 90, 1000])
            XCTAssertEqual(x.gelu().toArray().prefix(5), [-0, -0, 0, 90, 1000])
            XCTAssertTrue(x.relu().toArray()[5].isNaN)
            XCTAssertTrue(x.clamped(min: -1, max: 1).toArray()[5].isNaN)
            XCTAssertEqual(Tensor(shape: [2], [0, -0.0]).log().toArray(), [-.infinity, -.infinity])
            XCTAssertTrue(Tensor(shape: [1], [-1]).log().item.isNaN)
        }
    }

    // MARK: Gradients

    func testGradients() {
        let x = tensor([3, 7], from: -2.3, to: 2.1)     // avoids 0 (kinks of relu/abs) and the clamp bounds
        let pos = tensor([3, 7], from: 0.3, to: 3.1)
        let cases: [(String, Tensor, (Tensor) -> Tensor)] = [
            ("exp", x, { $0.exp() }), ("log", pos, { $0.log() }), ("sqrt", pos, { $0.sqrt() }),
            ("rsqrt", pos, { $0.rsqrt() }), ("pow2", x, { $0.pow(2) }), ("pow1.5", pos, { $0.pow(1.5) }),
            ("pow-1", pos, { $0.pow(-1) }), ("tanh", x, { $0.tanh() }), ("sigmoid", x, { $0.sigmoid() }),
            ("relu", x, { $0.relu() }), ("silu", x, { $0.silu() }), ("gelu", x, { $0.gelu() }),
            ("gelu_tanh", x, { $0.gelu(approximate: .tanh) }), ("quickGELU", x, { $0.quickGELU() }),
            ("abs", x, { $0.abs() }), ("clamp", x, { $0.clamped(min: -1.05, max: 0.95) }),
        ]
        for (name, input, f) in cases {
            let err = gradientCheckError([input], delta: 1e-2) { f($0[0]) }
            XCTAssertLessThan(err, 1e-2, name)
        }
    }

    func testClampAndReluGradientMasks() {
        // Matches torch: clamp passes the gradient at the bounds themselves; relu and abs give 0 at 0.
        let x = Tensor(shape: [5], [-2, -1, 0, 1, 2]); x.requiresGrad = true
        withGrad { x.clamped(min: -1, max: 1).sum() }.backward()
        XCTAssertEqual(x.grad!.toArray(), [0, 1, 1, 1, 0])
        x.grad = nil
        withGrad { x.relu().sum() + x.abs().sum() }.backward()
        XCTAssertEqual(x.grad!.toArray(), [-1, -1, 0, 2, 2])
    }

    // MARK: Speed (printed, not asserted: the machine is shared)

    func testThroughput() {
        let n = 1 << 22
        let x = tensor([n], from: -10, to: 10)
        withNoGrad {
            for (name, f) in [("relu", { (t: Tensor) in t.relu() }), ("exp", { $0.exp() }), ("tanh", { $0.tanh() }),
                              ("sigmoid", { $0.sigmoid() }), ("silu", { $0.silu() }), ("gelu", { $0.gelu() }),
                              ("quickGELU", { $0.quickGELU() })] as [(String, (Tensor) -> Tensor)] {
                var best = Double.infinity
                for _ in 0..<5 { let t0 = Date(); _ = f(x); best = min(best, Date().timeIntervalSince(t0)) }
                print(String(format: "%@ on 2^22 floats: %.2f ms (%.2f Gelem/s)", name, best * 1000, Double(n) / best / 1e9))
            }
        }
    }
}
